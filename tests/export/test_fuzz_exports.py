"""What the loader accepts can be exported and drawn: every damaged copy of a real project that loads
(tests/project_mutants.py: about 200 of the 1,437) is checked by the engine's own checks and exported to PDF,
and a seeded sample of them is rendered with the tiny model.

What is left out to stay fast, and how it is still covered:

- all of them are exported at 72 dpi, a seeded sample of 10 also at their layout's own resolution
  (300 dpi for print pages: painting is the same, only the pictures are larger);
- only a seeded sample of 3 is rendered (1 step, 64x64, one reference picture per character: about 8 s
  each on a CPU); a panel's own size is drawn scaled down to at most 128 pixels a side with its shape
  kept (a CPU takes minutes for a 1024x576 picture). Every one of
  them passes the engine's checks before a render at its full sizes: ``GenerationSettings.validate`` of
  its settings and ``check_panel_sizes`` of its panels, for an SDXL model (the largest sizes);
- the sample is rendered without its panels' poses and its characters' reference photos: they need a
  ControlNet and the IP-Adapter, not on this computer offline (the tests of poses and photos have their own);
- the one refusal allowed at render time is the engine's plain one for a prompt that tags somebody who
  is not in the cast: the app keeps such prompts when a character is deleted, so the loader accepts
  them (render names the panel before loading the model).
"""

from __future__ import annotations

import copy
import random
from collections import Counter

from pypdf import PdfReader

from project_mutants import loaded_mutants
from storystudio.engine.errors import InputError
from storystudio.engine.story.pipeline import StoryPipeline
from storystudio.engine.story.settings import GenerationSettings, check_panel_sizes
from storystudio.export.comic import export_pdf
from storystudio.project import limits
from storystudio.project.layout import auto_layout
from storystudio.project.model import Project

RENDERED = 3  # rendered with the tiny model
AT_OWN_RESOLUTION = 10  # exported at the layout's own resolution too
DRAWN_SIDE = 128  # the longest side a panel's own size is drawn at here


def _small(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled to at most DRAWN_SIDE a side, in multiples of 64 (the shape kept as far as that goes)."""
    scale = DRAWN_SIDE / max(size)
    return tuple(max(64, round(v * scale / 64) * 64) for v in size)


def test_every_project_the_loader_accepts_exports_and_renders(tmp_path, qt_gui, tiny_sd15):
    loaded = [(m, copy.deepcopy(p)) for m, p in loaded_mutants() if isinstance(p, Project)]
    assert len(loaded) > 100
    rng = random.Random(7)
    own_resolution = {id(p) for _, p in rng.sample(loaded, AT_OWN_RESOLUTION)}
    wrong: list[str] = []
    outcomes: Counter[str] = Counter()
    for mutant, project in loaded:
        label = f"{mutant.kind} ({mutant.what})"
        try:  # what a render of it at its full sizes checks before the model loads
            GenerationSettings.from_project(project.settings).validate(family="sdxl")
            check_panel_sizes(project.to_story(), limits.PICTURE_MULTIPLE, "sdxl")
            outcomes["passed the engine's checks"] += 1
        except Exception as exc:  # noqa: BLE001 - what this test is about
            wrong.append(f"{label}: the engine's checks: {type(exc).__name__}: {str(exc)[:200]}")
        try:
            if not project.layout.pages:
                project.layout = auto_layout(project.panels, layout=project.layout)
            for dpi in (72, None) if id(project) in own_resolution else (72,):
                result = export_pdf(project, tmp_path / "out.pdf", dpi=dpi)
                assert len(PdfReader(tmp_path / "out.pdf").pages) == result.pages >= 1
            outcomes["exported"] += 1
        except Exception as exc:  # noqa: BLE001
            wrong.append(f"{label}: PDF export: {type(exc).__name__}: {str(exc)[:200]}")
    engine = StoryPipeline(tiny_sd15)
    for mutant, project in rng.sample(loaded, RENDERED):
        settings = GenerationSettings.from_project(project.settings, steps=1, width=64, height=64, id_length=1)
        story = project.to_story()
        for panel in story.panels:
            panel.size = None if panel.size is None else _small(panel.size)
            panel.guides = ()  # poses need a ControlNet, which is not here offline (its own tests build a tiny one)
        for character in story.characters:
            character.photo = None  # a reference photo needs the IP-Adapter, not here offline either
        try:
            settings.validate()
            result = engine.render(story, settings)
            assert set(result.images) == {p.id for p in project.panels}
            outcomes["rendered"] += 1
        except InputError as exc:
            if "There is no character named" not in str(exc):
                wrong.append(f"{mutant.kind} ({mutant.what}): render refused: {exc}")
            outcomes["render refused a tag of nobody"] += 1
        except Exception as exc:  # noqa: BLE001
            wrong.append(f"{mutant.kind} ({mutant.what}): render: {type(exc).__name__}: {str(exc)[:200]}")
    print(f"{len(loaded)} loaded mutants: {dict(outcomes)}")
    assert not wrong, f"{len(wrong)} went wrong:\n" + "\n".join(wrong[:40])
    assert outcomes["exported"] == outcomes["passed the engine's checks"] == len(loaded)
