"""The project schema names the same samplers and styles the engine knows (each list lives with its user;
this keeps them equal)."""

from __future__ import annotations

from storystudio.engine.story.settings import SCHEDULERS
from storystudio.engine.story.styles import get_style, style_names
from storystudio.project import schema


def test_the_schema_knows_the_engines_samplers():
    assert set(schema.SCHEDULER_IDS) == set(SCHEDULERS)


def test_the_schema_knows_the_engines_styles():
    assert schema.style_keys() == {"".join(name.lower().split()) for name in style_names()}
    for name in style_names():  # what the schema lets through, the engine finds
        assert get_style(name.upper().replace(" ", "  ")).name == name
