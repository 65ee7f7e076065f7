"""What a comic export would lack, found before it starts: panels without a picture, text that does not fit.

The same checks the exports make while they paint (``page_render.fit_text``
says when a balloon's text overflows), without painting anything. Needs a
``QGuiApplication`` for the font metrics, as the page renderer does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..project.model import Project
from .page_render import fit_text


@dataclass(frozen=True)
class Problem:
    kind: str  # "no-picture" or "overflow"
    text: str  # in plain words
    panel: str | None = None  # the panel it concerns, where there is one
    page: int | None = None  # 1-based


def comic_problems(project: Project) -> list[Problem]:
    """Every frame on the pages whose panel has no picture yet, and every balloon whose text overflows."""
    numbers = {p.id: i for i, p in enumerate(project.panels, 1)}
    layout = project.layout.copy()
    layout_words = project.words()
    from ..project.layout import resolve_words

    resolve_words(layout, layout_words)  # balloons show their panels' words as the panels have them now
    problems: list[Problem] = []
    for page_number, page in enumerate(layout.pages, 1):
        for frame in page.frames:
            if not frame.panel:
                continue
            panel = project.panel_by_id(frame.panel)
            if panel is None or panel.chosen_version is None or panel.chosen_version.image not in project.images:
                label = f"Panel {numbers[frame.panel]}" if frame.panel in numbers else "A deleted panel"
                problems.append(Problem("no-picture", f"{label} has no picture yet: its frame on page "
                                        f"{page_number} prints empty.", frame.panel, page_number))
        for balloon in page.balloons:
            if balloon.text.strip() and fit_text(balloon, layout).overflow:
                words = " ".join(balloon.text.split())
                short = words if len(words) <= 30 else words[:29] + "…"
                problems.append(Problem("overflow", f'The text "{short}" does not fit its {balloon.kind} balloon on '
                                        f"page {page_number}: make the balloon larger or the words fewer.",
                                        balloon.panel, page_number))
    return problems


def animatic_problems(project: Project) -> list[Problem]:
    """Panels the animatic would show without a picture."""
    return [Problem("no-picture", f"Panel {i} has no picture yet: the animatic shows an empty shot for it.", p.id)
            for i, p in enumerate(project.panels, 1)
            if p.chosen_version is None or p.chosen_version.image not in project.images]
