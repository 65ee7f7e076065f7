"""Would drawing a panel again give a picture it already has? (No Qt, no torch.)

A picture is a function of its recipe: the words the model reads, the seed,
the sampler settings, the size and the model. When every part of it is what
a panel's existing version was made with, *Regenerate (same seed)* would add
the same picture again; the window says so instead.
"""

from __future__ import annotations

from typing import Any

from ..engine.story.regions import background_prompt, photo_parameters, plan_regions, uses_regions
from ..engine.story.settings import GenerationSettings, derive_seed
from ..engine.story.styles import get_style
from ..project.model import ProjectPanel, ProjectSettings
from ..project.pose import picture_digest
from ..project.story import Story


def recipe(panel: ProjectPanel, story: Story, settings: ProjectSettings) -> dict[str, Any]:
    """What a version of ``panel`` drawn now would record in its parameters (the parts that shape it)."""
    story_panel = next(p for p in story.panels if p.key == panel.id)
    width, height = panel.size or (settings.width, settings.height)
    style = get_style(settings.style)
    generation = GenerationSettings.from_project(settings)
    # A shared panel's words are its action (the looks are in its regions, whose boxes and texts count too).
    shared = uses_regions(story_panel, generation.regions)
    base = background_prompt(story, story_panel) if shared else story.expand(story_panel)
    order = {c.name: i for i, c in enumerate(story.characters)}
    cast = sorted(set(story_panel.characters), key=order.__getitem__)
    regions = plan_regions(story, [story_panel], cast, style, settings.negative_prompt).parameters(0) if shared else None
    return {
        "regions": regions, "photos": photo_parameters(story, story_panel.characters) or None,
        "story_prompt": base, "negative_prompt": style.apply(base, settings.negative_prompt)[1],
        "seed": derive_seed(settings.seed, panel.id, panel.variation), "steps": settings.steps,
        "guidance": settings.guidance, "width": width, "height": height, "scheduler": settings.scheduler,
        "freeu": settings.freeu, "style": style.name, "story_seed": settings.seed, "id_length": settings.id_length,
        "consistency": generation.consistency.to_dict(), "model": settings.model,
        "controls": _guides(story_panel.guides, (width, height), generation),
    }


_GUIDE_KEYS = ("kind", "sha256", "strength", "start", "end")


def _guides(guides, size, generation: GenerationSettings) -> list[dict[str, Any]] | None:
    """A panel's poses as its PNG parameters record them (without the ControlNet's name); None for none."""
    drawn = [dict(kind=g.kind, sha256=picture_digest(g.render(size)), strength=generation.control_strength,
                  start=generation.control_start, end=generation.control_end) for g in sorted(guides, key=lambda g: g.kind)]
    return drawn or None


def _made(key: str, value: Any) -> Any:
    if key == "controls" and value:
        return [{k: c.get(k) for k in _GUIDE_KEYS} for c in value]
    return value


def would_repeat(panel: ProjectPanel, story: Story, settings: ProjectSettings) -> bool:
    """True when one of the panel's versions was drawn from exactly the recipe it would be drawn from now."""
    if not panel.versions:
        return False
    wanted = recipe(panel, story, settings)
    for version in panel.versions:
        made = version.parameters
        if all(_made(key, made.get(key)) == value for key, value in wanted.items() if key in made or key != "model"):
            return True
    return False
