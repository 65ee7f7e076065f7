"""Tiny random-weight models built offline and loaded through the real code path (torch).

Imported by the conftest of each test package that draws pictures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from storystudio.engine.models.loading import load_model, quiet_libraries
from storystudio.engine.models.random_weights import create_tiny_model

torch.set_num_threads(min(4, os.cpu_count() or 1))
quiet_libraries()


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: create_tiny_model(root / arch, arch) for arch in ("sd15", "sdxl")}


@pytest.fixture(scope="session", params=["sd15", "sdxl"])
def tiny_model(request, tiny_model_dirs):
    """A tiny model loaded by load_model, once per architecture."""
    return load_model(str(tiny_model_dirs[request.param]), device="cpu")


@pytest.fixture(scope="session")
def tiny_sdxl(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["sdxl"]), device="cpu")


@pytest.fixture(scope="session")
def tiny_sd15(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["sd15"]), device="cpu")


@pytest.fixture(scope="session")
def tiny_controlnets(tiny_model_dirs, tmp_path_factory) -> dict[str, Path]:
    """A tiny random ControlNet for each tiny model, saved as the Hub's ControlNets are."""
    from storystudio.engine.models.random_weights import create_tiny_controlnet

    root = tmp_path_factory.mktemp("controlnets")
    return {arch: create_tiny_controlnet(root / arch, tiny_model_dirs[arch], seed=3) for arch in ("sd15", "sdxl")}
