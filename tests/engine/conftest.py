"""The engine's tests use the tiny random-weight models (tests/model_fixtures.py); no Qt."""

from model_fixtures import tiny_controlnets, tiny_model, tiny_model_dirs, tiny_sd15, tiny_sdxl  # noqa: F401
