"""Undoable edits of the project. Each command changes the document only through the session."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QUndoCommand

from ..project.animatic import Animatic
from ..project.layout import Layout, Words, follow_words, remove_panel_everywhere, resolve_words
from ..project.model import ImageVersion, Project, ProjectCharacter, ProjectPanel, new_id, now_iso
from .session import ProjectSession

MOVE_ID = 1001
TEXT_ID = 1002
LAYOUT_ID = 1003
ANIMATIC_ID = 1004
DURATION_ID = 1005


class MovePanels(QUndoCommand):
    """Move panels to a position in the story; consecutive moves merge into one step."""

    def __init__(self, session: ProjectSession, ids: list[str], row: int):
        super().__init__("Move panels" if len(ids) > 1 else "Move panel")
        self.session = session
        self.before = session.order()
        rest = [i for i in self.before if i not in ids]
        # the row counted in the full list; the moved panels above it no longer count
        row -= sum(1 for i in self.before[:row] if i in ids)
        moving = [i for i in self.before if i in ids]
        self.after = rest[:row] + moving + rest[row:]

    def redo(self) -> None:
        self.session.set_order(self.after)

    def undo(self) -> None:
        self.session.set_order(self.before)

    def id(self) -> int:
        return MOVE_ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, MovePanels):
            return False
        self.after = other.after
        return True

    @property
    def changes_nothing(self) -> bool:
        return self.before == self.after


class SetPanelText(QUndoCommand):
    """Edit a panel's prompt, caption or dialogue; typing in the same field merges.

    The caption and dialogue are the words the panel's lettering shows: the
    pages follow in the same step (a balloon keeps its line, removed words lose
    their balloon, new words get one in the panel's frame).
    """

    LABELS = {"prompt": "Edit prompt", "caption": "Edit caption", "dialogue": "Edit dialogue"}

    def __init__(self, session: ProjectSession, panel_id: str, field: str, value: str):
        super().__init__(self.LABELS[field])
        self.session, self.panel_id, self.field = session, panel_id, field
        panel = session.panel(panel_id)
        self.old = getattr(panel, field)
        self.new = value
        self.layout_before: Layout | None = None
        self.layout_after: Layout | None = None
        if field in ("caption", "dialogue") and session.project.layout.page_of_panel(panel_id) is not None:
            self.layout_before = session.project.layout.copy()
            after = self.layout_before.copy()
            changed = copy.copy(panel)
            setattr(changed, field, value)
            follow_words(after, changed, Words.of(panel))
            self.layout_after = after

    def redo(self) -> None:
        self.session.set_panel_field(self.panel_id, self.field, self.new)
        if self.layout_after is not None and self.layout_after != self.layout_before:
            self.session.set_layout(self.layout_after.copy())

    def undo(self) -> None:
        self.session.set_panel_field(self.panel_id, self.field, self.old)
        if self.layout_before is not None and self.layout_after != self.layout_before:
            self.session.set_layout(self.layout_before.copy())

    def id(self) -> int:
        return TEXT_ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, SetPanelText) or (other.panel_id, other.field) != (self.panel_id, self.field):
            return False
        self.new = other.new
        if other.layout_after is not None:
            self.layout_before = self.layout_before or other.layout_before
            self.layout_after = other.layout_after
        return True


class InsertPanels(QUndoCommand):
    def __init__(self, session: ProjectSession, index: int, panels: list[ProjectPanel], text: str = "Insert panel"):
        super().__init__(text)
        self.session, self.index, self.panels = session, index, panels

    def redo(self) -> None:
        self.session.insert_panels(self.index, self.panels)

    def undo(self) -> None:
        self.session.remove_panels([p.id for p in self.panels])


def duplicate_panel(session: ProjectSession, panel_id: str) -> InsertPanels:
    """A copy right after the original, with its own identity (so its own seed)."""
    original = session.panel(panel_id)
    twin = copy.deepcopy(original)
    twin.id = new_id()
    return InsertPanels(session, session.project.panel_index(panel_id) + 1, [twin], "Duplicate panel")


def new_panel(session: ProjectSession, index: int, prompt: str = "a new panel") -> InsertPanels:
    return InsertPanels(session, index, [ProjectPanel(id=new_id(), prompt=prompt)])


class DeletePanels(QUndoCommand):
    """Delete panels; their frames on the pages empty and their generated lettering goes with them."""

    def __init__(self, session: ProjectSession, ids: list[str]):
        super().__init__("Delete panels" if len(ids) > 1 else "Delete panel")
        self.session, self.ids = session, list(ids)
        self.removed: list[tuple[int, ProjectPanel]] = []
        self.layout_before = session.project.layout.copy()

    def redo(self) -> None:
        self.removed = self.session.remove_panels(self.ids)
        if any(self.session.project.layout.page_of_panel(i) for i in self.ids):
            layout = self.layout_before.copy()
            for panel_id in self.ids:
                remove_panel_everywhere(layout, panel_id)
            self.session.set_layout(layout)

    def undo(self) -> None:
        for index, panel in self.removed:  # ascending indices: each lands where it was
            self.session.insert_panels(index, [panel])
        if self.session.project.layout != self.layout_before:
            self.session.set_layout(self.layout_before.copy())


class SetPanelSizes(QUndoCommand):
    """Give panels their own picture size (a frame's shape), or None for the story's size."""

    def __init__(self, session: ProjectSession, sizes: dict[str, tuple[int, int] | None]):
        super().__init__("Shape panel to its frame" if len(sizes) == 1 else "Shape panels to their frames")
        self.session = session
        self.new = dict(sizes)
        self.old = {pid: session.panel(pid).size for pid in sizes}

    def redo(self) -> None:
        for pid, size in self.new.items():
            self.session.set_panel_field(pid, "size", size)

    def undo(self) -> None:
        for pid, size in self.old.items():
            self.session.set_panel_field(pid, "size", size)

    @property
    def changes_nothing(self) -> bool:
        return self.old == self.new


class SetPanelRegions(QUndoCommand):
    """Move or resize the characters' boxes on a shared panel (``None``: back to side by side in tag order)."""

    def __init__(self, session: ProjectSession, panel_id: str, regions: list | None):
        super().__init__("Reset character boxes" if regions is None else "Move character box")
        self.session, self.panel_id = session, panel_id
        self.old = copy.deepcopy(session.panel(panel_id).regions)
        self.new = None if regions is None else list(regions)

    def redo(self) -> None:
        self.session.set_panel_field(self.panel_id, "regions", copy.deepcopy(self.new))

    def undo(self) -> None:
        self.session.set_panel_field(self.panel_id, "regions", copy.deepcopy(self.old))


class SetPanelPoses(QUndoCommand):
    """Give a panel its poses (one per character); pose pictures imported with them join the image store."""

    def __init__(self, session: ProjectSession, panel_id: str, poses: list, images: dict[str, bytes]):
        super().__init__("Edit poses")
        self.session, self.panel_id = session, panel_id
        self.old = copy.deepcopy(session.panel(panel_id).poses)
        self.new = copy.deepcopy(poses)
        for name, png in images.items():  # named by their content: the same picture is stored once
            session.project.images.setdefault(name, png)

    def redo(self) -> None:
        self.session.set_panel_field(self.panel_id, "poses", copy.deepcopy(self.new))

    def undo(self) -> None:
        self.session.set_panel_field(self.panel_id, "poses", copy.deepcopy(self.old))

    @property
    def changes_nothing(self) -> bool:
        return self.old == self.new


class _EditSnapshot(QUndoCommand):
    """A change to one part of the project (the layout, the animatic), kept as before and after copies.

    The parts are small data, so a copy is the simplest faithful undo.
    ``change`` edits a copy of the current part in place; its return value is
    kept as ``result``. Edits with the same ``merge`` key in a row (typing in
    one balloon, nudging one frame) merge into one undo step. Subclasses name
    the part (``PART``), their merge id and how the session installs a part.
    """

    PART = ""
    MERGE_ID = -1

    def __init__(self, session: ProjectSession, text: str, change: Callable[[Any], Any], merge: str = ""):
        super().__init__(text)
        self.session, self.merge = session, merge
        self.before = getattr(session.project, self.PART).copy()
        after = self.before.copy()
        self.result = change(after)
        self.after = after

    def install(self, part: Any) -> None:
        raise NotImplementedError

    def redo(self) -> None:
        self.install(self.after.copy())

    def undo(self) -> None:
        self.install(self.before.copy())

    def id(self) -> int:
        return self.MERGE_ID if self.merge else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if type(other) is not type(self) or other.merge != self.merge:
            return False
        self.after = other.after
        return True

    @property
    def changes_nothing(self) -> bool:
        return self.before == self.after


class EditLayout(_EditSnapshot):
    """Any change to the pages: frames, balloons, page settings."""

    PART, MERGE_ID = "layout", LAYOUT_ID

    def install(self, part: Layout) -> None:
        self.session.set_layout(part)


class EditLettering(QUndoCommand):
    """A change to the pages that may change panels' words too, as one step: editing, adding or deleting
    lettering that shows a panel's caption or dialogue changes the panel (and so the animatic).

    ``change(layout, words)`` edits a copy of the layout and of every panel's
    words (panel id -> ``Words``) in place; its return value is kept as
    ``result``. Edits with the same ``merge`` key in a row merge.
    """

    def __init__(self, session: ProjectSession, text: str, change: Callable[[Layout, dict[str, Words]], Any],
                 merge: str = ""):
        super().__init__(text)
        self.session, self.merge = session, merge
        project = session.project
        self.layout_before = project.layout.copy()
        self.words_before = {p.id: (p.caption, p.dialogue) for p in project.panels}
        words = project.words()
        layout = self.layout_before.copy()
        self.result = change(layout, words)
        self.layout_after = layout
        # only the panels whose words really changed are written back (their text as Words spells it)
        self.words_after = {pid: (w.caption, w.dialogue) for pid, w in words.items()
                            if Words.of(project.panel_by_id(pid)) != w}

    def _install(self, layout: Layout, words: dict[str, tuple[str, str]]) -> None:
        for panel_id, (caption, dialogue) in words.items():
            panel = self.session.project.panel_by_id(panel_id)
            if panel is None:
                continue
            if panel.caption != caption:
                self.session.set_panel_field(panel_id, "caption", caption)
            if panel.dialogue != dialogue:
                self.session.set_panel_field(panel_id, "dialogue", dialogue)
        layout = layout.copy()
        resolve_words(layout, self.session.project.words())
        self.session.set_layout(layout)

    def redo(self) -> None:
        self._install(self.layout_after, self.words_after)

    def undo(self) -> None:
        self._install(self.layout_before, {pid: self.words_before[pid] for pid in self.words_after})

    def id(self) -> int:
        return LAYOUT_ID if self.merge else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, EditLettering) or other.merge != self.merge:
            return False
        self.layout_after = other.layout_after
        for pid, value in other.words_after.items():
            self.words_after[pid] = value
        return True

    @property
    def changes_nothing(self) -> bool:
        return self.layout_before == self.layout_after and not self.words_after


class EditAnimatic(_EditSnapshot):
    """Any change to the animatic's shots, cuts or settings; it may bring pictures (a generated clip's frames)."""

    PART, MERGE_ID = "animatic", ANIMATIC_ID

    def __init__(self, session: ProjectSession, text: str, change: Callable[[Animatic], Any], merge: str = ""):
        super().__init__(session, text, change, merge)
        self.images: dict[str, bytes] = {}

    def install(self, part: Animatic) -> None:
        self.session.set_animatic(part)

    def redo(self) -> None:
        self.session.project.images.update(self.images)
        super().redo()

    def mergeWith(self, other: QUndoCommand) -> bool:
        return not getattr(other, "images", None) and super().mergeWith(other)

    @property
    def changes_nothing(self) -> bool:
        return super().changes_nothing and not self.images


def apply_clip(session: ProjectSession, before: str, after: str, frames: list[bytes],
               parameters: dict[str, Any]) -> EditAnimatic:
    """A generated transition clip becomes the cut's clip (its frames join the image store)."""
    names = [f"img-{new_id()}.png" for _ in frames]

    def change(animatic: Animatic) -> None:
        cut = animatic.cut(before)
        cut.kind, cut.clip, cut.clip_between = "generated", names, (before, after)
        cut.clip_parameters = copy.deepcopy(dict(parameters))
        animatic.cuts[before] = cut

    command = EditAnimatic(session, "Generated transition", change)
    command.images = dict(zip(names, frames))
    return command


class SetPanelDuration(QUndoCommand):
    """How long a panel holds in the animatic (None: from its words); steps of one spin box merge."""

    def __init__(self, session: ProjectSession, panel_id: str, seconds: float | None, merge: bool = True):
        super().__init__("Change duration" if merge else "Automatic duration" if seconds is None else "Set duration")
        self.session, self.panel_id, self.merge = session, panel_id, merge
        self.old, self.new = session.panel(panel_id).duration, seconds

    def redo(self) -> None:
        self.session.set_panel_field(self.panel_id, "duration", self.new)

    def undo(self) -> None:
        self.session.set_panel_field(self.panel_id, "duration", self.old)

    def id(self) -> int:
        return DURATION_ID if self.merge else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, SetPanelDuration) or other.panel_id != self.panel_id or not other.merge:
            return False
        self.new = other.new
        return True


class ChooseVersion(QUndoCommand):
    def __init__(self, session: ProjectSession, panel_id: str, index: int):
        super().__init__("Choose version")
        self.session, self.panel_id, self.new = session, panel_id, index
        self.old = session.panel(panel_id).chosen

    def redo(self) -> None:
        self.session.set_panel_field(self.panel_id, "chosen", self.new)

    def undo(self) -> None:
        self.session.set_panel_field(self.panel_id, "chosen", self.old)


class ApplyPanelImage(QUndoCommand):
    """A generated picture becomes a new version of its panel, and the chosen one."""

    def __init__(self, session: ProjectSession, panel_id: str, png: bytes, parameters: dict[str, Any]):
        super().__init__("Apply generated panel")
        self.session, self.panel_id = session, panel_id
        self.image = session.project.add_image(png)
        self.version = ImageVersion(image=self.image, parameters=dict(parameters), created=now_iso())
        self.old_chosen = session.panel(panel_id).chosen

    def redo(self) -> None:
        panel = self.session.panel(self.panel_id)
        panel.versions.append(self.version)
        self.session.set_panel_field(self.panel_id, "chosen", len(panel.versions) - 1)

    def undo(self) -> None:
        panel = self.session.panel(self.panel_id)
        panel.versions.remove(self.version)
        self.session.set_panel_field(self.panel_id, "chosen", self.old_chosen)


class NewVariation(QUndoCommand):
    """Ask for another picture of the panel: its variation number (and so its seed) moves on."""

    def __init__(self, session: ProjectSession, panel_id: str):
        super().__init__("New variation")
        self.session, self.panel_id = session, panel_id
        panel = session.panel(panel_id)
        self.old = panel.variation
        self.new = 1 + max([panel.variation] + [v.parameters.get("variation", 0) for v in panel.versions])

    def redo(self) -> None:
        self.session.set_panel_field(self.panel_id, "variation", self.new)

    def undo(self) -> None:
        self.session.set_panel_field(self.panel_id, "variation", self.old)


class AddCharacter(QUndoCommand):
    def __init__(self, session: ProjectSession, name: str, description: str):
        super().__init__("Add character")
        self.session = session
        self.character = ProjectCharacter(id=new_id(), name=name, description=description)
        self.index = len(session.project.characters)

    def redo(self) -> None:
        self.session.insert_character(self.index, self.character)

    def undo(self) -> None:
        self.session.remove_character(self.character.id)


class DeleteCharacter(QUndoCommand):
    def __init__(self, session: ProjectSession, character_id: str):
        super().__init__("Delete character")
        self.session, self.character_id = session, character_id
        self.index, self.character = 0, None

    def redo(self) -> None:
        self.index, self.character = self.session.remove_character(self.character_id)

    def undo(self) -> None:
        self.session.insert_character(self.index, self.character)


class SetCharacterField(QUndoCommand):
    LABELS = {"name": "Rename character", "description": "Edit description", "locked": "Lock character",
              "photo": "Set reference photo", "photo_strength": "Set photo strength",
              "chosen_references": "Choose references"}

    def __init__(self, session: ProjectSession, character_id: str, field: str, value: Any):
        super().__init__(self.LABELS.get(field, "Edit character"))
        self.session, self.character_id, self.field = session, character_id, field
        self.old = copy.deepcopy(getattr(session.character(character_id), field))
        self.new = value

    def redo(self) -> None:
        self.session.set_character_field(self.character_id, self.field, copy.deepcopy(self.new))

    def undo(self) -> None:
        self.session.set_character_field(self.character_id, self.field, copy.deepcopy(self.old))


def rename_character(session: ProjectSession, character_id: str, name: str) -> None:
    """Rename a character and the [Name] tags of every panel that shows it, as one undo step."""
    old = session.character(character_id).name
    tag = re.compile(r"\[\s*" + re.escape(old) + r"\s*\]")
    session.undo.beginMacro(f"Rename {old} to {name}")
    for panel in session.project.panels:
        renamed = tag.sub(f"[{name}]", panel.prompt)
        if renamed != panel.prompt:
            session.undo.push(SetPanelText(session, panel.id, "prompt", renamed))
    session.undo.push(SetCharacterField(session, character_id, "name", name))
    session.undo.endMacro()


class ApplyReferences(QUndoCommand):
    """Generated reference images become the character's references (all chosen)."""

    def __init__(self, session: ProjectSession, character_id: str, images: list[tuple[bytes, dict]]):
        super().__init__("Apply references")
        self.session, self.character_id = session, character_id
        character = session.character(character_id)
        self.old = (list(character.references), list(character.chosen_references))
        versions = [ImageVersion(image=session.project.add_image(png), parameters=dict(params), created=now_iso())
                    for png, params in images]
        self.new = (versions, list(range(len(versions))))

    def redo(self) -> None:
        self.session.set_character_field(self.character_id, "references", list(self.new[0]))
        self.session.set_character_field(self.character_id, "chosen_references", list(self.new[1]))

    def undo(self) -> None:
        self.session.set_character_field(self.character_id, "references", list(self.old[0]))
        self.session.set_character_field(self.character_id, "chosen_references", list(self.old[1]))


class ApplyScript(QUndoCommand):
    """The whole story from script text, as one step (``Project.import_script``'s rules: a character of the
    same name and a panel with an unchanged prompt keep their id and pictures).

    Raises ``ScriptError`` before anything changes when the text has mistakes.
    """

    def __init__(self, session: ProjectSession, text: str):
        super().__init__("Edit script")
        project = session.project
        self.session = session
        self.before = (copy.deepcopy(project.characters), copy.deepcopy(project.panels), project.layout.copy())
        scratch = Project(title=project.title, characters=copy.deepcopy(project.characters),
                          panels=copy.deepcopy(project.panels), layout=project.layout.copy())
        scratch.import_script(text)  # a ScriptError leaves the project as it was
        self.after = (scratch.characters, scratch.panels, scratch.layout)

    @property
    def changes_nothing(self) -> bool:
        def plain(state):
            characters, panels, layout = state
            return [c.to_dict() for c in characters], [p.to_dict() for p in panels], layout.to_dict()

        return plain(self.before) == plain(self.after)

    def _install(self, state) -> None:
        characters, panels, layout = copy.deepcopy(state[:2]) + (state[2].copy(),)
        self.session.set_story(characters, panels, layout)

    def redo(self) -> None:
        self._install(self.after)

    def undo(self) -> None:
        self._install(self.before)


class SetSetting(QUndoCommand):
    def __init__(self, session: ProjectSession, field: str, value: Any):
        super().__init__(f"Change {field.replace('_', ' ')}")
        self.session, self.field, self.new = session, field, value
        self.old = getattr(session.project.settings, field)

    def redo(self) -> None:
        self.session.set_setting(self.field, self.new)

    def undo(self) -> None:
        self.session.set_setting(self.field, self.old)
