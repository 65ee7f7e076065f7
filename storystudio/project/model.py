"""The project a creator edits: cast, panels, their pictures and the generation settings.

This is the document the desktop app opens, changes and saves (see ``fileio``
for the file format). It is plain mutable data with no Qt and no undo logic:
the UI wraps each change in an undo command of its own.

Every panel and character has a stable random ``id``. Panel seeds derive from
the panel id (it is the ``key`` of the engine's ``Panel``), so moving a panel
around the story never changes its picture.

Pictures live in :attr:`Project.images`, a store of PNG bytes by file name;
panel versions, character references and photos refer to them by name.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from ..resources_path import resource
from .animatic import Animatic
from .layout import Layout, Words, follow_words, remove_panel_everywhere, resolve_words, words_of
from .regions import Region, panel_regions
from .pose import PanelPose, guide_of
from .script import format_script, load_script, parse_script
from .story import DEFAULT_PHOTO_STRENGTH, NO_CHARACTER, TAG_PATTERN, Character, Panel, Story

#: The first eight bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def new_id() -> str:
    """A fresh random id (32 hex digits)."""
    return uuid.uuid4().hex


def now_iso() -> str:
    """The current local time as an ISO 8601 string with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _strip_no_character_tag(prompt: str) -> str:
    """Remove a leading ``[NC]``: the model says "no character" by having no tags at all."""
    text = prompt.strip()
    match = TAG_PATTERN.match(text)
    if match and match.group(1).strip() == NO_CHARACTER:
        return text[match.end() :].strip()
    return prompt


@dataclass
class ImageVersion:
    """One picture in the image store together with the parameters that made it."""

    image: str  # file name in Project.images, e.g. "img-<hex>.png"
    parameters: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "parameters": copy.deepcopy(self.parameters), "created": self.created}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageVersion:
        return cls(
            image=data["image"],
            parameters=copy.deepcopy(data.get("parameters", {})),
            created=data.get("created", ""),
        )


@dataclass
class ProjectCharacter:
    """A member of the cast, with an optional photo and the reference pictures drawn for it."""

    name: str
    description: str = ""
    id: str = field(default_factory=new_id)
    photo: str | None = None  # image file name of a reference photo, if the user gave one
    photo_strength: float = DEFAULT_PHOTO_STRENGTH  # how strongly the photo steers the character's look (0 .. 2; 0: not at all)
    locked: bool = False  # the user is happy with the look: keep its references as they are
    references: list[ImageVersion] = field(default_factory=list)
    chosen_references: list[int] = field(default_factory=list)  # indices into references

    @property
    def chosen_reference_versions(self) -> list[ImageVersion]:
        """The references the user picked, in the order picked (indices out of range are skipped)."""
        return [self.references[i] for i in self.chosen_references if 0 <= i < len(self.references)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "photo": self.photo,
            "photo_strength": self.photo_strength,
            "locked": self.locked,
            "references": [version.to_dict() for version in self.references],
            "chosen_references": list(self.chosen_references),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectCharacter:
        return cls(
            id=data["id"],
            name=data["name"],
            description=data.get("description", ""),
            photo=data.get("photo"),
            photo_strength=float(data.get("photo_strength", DEFAULT_PHOTO_STRENGTH)),  # absent in files from before photos acted
            locked=bool(data.get("locked", False)),
            references=[ImageVersion.from_dict(item) for item in data.get("references", [])],
            chosen_references=[int(i) for i in data.get("chosen_references", [])],
        )


@dataclass
class ProjectPanel:
    """One panel: what it shows (prompt with ``[Name]`` tags), its words, and its picture versions."""

    prompt: str
    caption: str = ""
    dialogue: str = ""
    id: str = field(default_factory=new_id)
    variation: int = 0  # seed variation: "new variation" increments it
    versions: list[ImageVersion] = field(default_factory=list)
    chosen: int | None = None  # index into versions
    duration: float | None = None  # seconds in the animatic; None means automatic
    # (width, height) to generate at, set from the shape of the panel's frame; None uses the settings' size.
    size: tuple[int, int] | None = None
    # Where each character stands when the panel shows several (project.regions); None: side by side in tag order.
    regions: list[Region] | None = None
    poses: list[PanelPose] = field(default_factory=list)  # a pose per character (ControlNet OpenPose)

    def drawn_regions(self, cast_names: Iterable[str] | None = None) -> list[Region]:
        """The boxes the panel is drawn with: its own, and the default place of any character without one."""
        return panel_regions(self.characters(cast_names), self.regions)

    def pose_of(self, character: str) -> PanelPose | None:
        """The pose of ``character`` ("" for a pose of the whole panel) in this panel, or None."""
        return next((p for p in self.poses if p.character == character), None)

    @property
    def chosen_version(self) -> ImageVersion | None:
        """The picked picture version, or None when none is picked (or the index is stale)."""
        if self.chosen is None or not 0 <= self.chosen < len(self.versions):
            return None
        return self.versions[self.chosen]

    @property
    def no_character(self) -> bool:
        """True when the prompt tags nobody (what a script writes as ``[NC]``)."""
        return not self.characters()

    def characters(self, cast_names: Iterable[str] | None = None) -> list[str]:
        """Names tagged in the prompt, in order of first appearance, without repeats.

        With ``cast_names``, tags naming nobody in the cast are left out.
        """
        cast = None if cast_names is None else set(cast_names)
        names: list[str] = []
        for match in TAG_PATTERN.finditer(self.prompt):
            name = match.group(1).strip()
            if not name or name == NO_CHARACTER or name in names:
                continue
            if cast is not None and name not in cast:
                continue
            names.append(name)
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "caption": self.caption,
            "dialogue": self.dialogue,
            "variation": self.variation,
            "versions": [version.to_dict() for version in self.versions],
            "chosen": self.chosen,
            "duration": self.duration,
            "size": None if self.size is None else list(self.size),
            "regions": None if self.regions is None else [r.to_dict() for r in self.regions],
            "poses": [pose.to_dict() for pose in self.poses],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectPanel:
        duration = data.get("duration")
        size = data.get("size")  # absent in files written before panels had their own size
        return cls(
            id=data["id"],
            prompt=data["prompt"],
            caption=data.get("caption", ""),
            dialogue=data.get("dialogue", ""),
            variation=int(data.get("variation", 0)),
            versions=[ImageVersion.from_dict(item) for item in data.get("versions", [])],
            chosen=data.get("chosen"),
            duration=None if duration is None else float(duration),
            size=None if size is None else (int(size[0]), int(size[1])),
            regions=None if data.get("regions") is None else [Region.from_dict(r) for r in data["regions"]],
            poses=[PanelPose.from_dict(item) for item in data.get("poses", [])],  # absent before poses
        )


@dataclass
class ProjectSettings:
    """How the project's pictures are generated."""

    model: str = ""  # model id or local path; empty until the user picks one
    style: str | None = None
    width: int = 768
    height: int = 768
    steps: int = 35
    guidance: float = 5.0
    seed: int = 0
    rate: float = 0.5  # consistency sampling rate, used at both resolutions
    id_length: int = 4
    scheduler: str = "ddim"
    freeu: bool = True
    # A panel of two or more characters gives each its own region (its box reads only that character's
    # looks); False lets every character's looks act everywhere in the panel, as the paper's code does.
    regions: bool = True
    negative_prompt: str = ""
    device: str = "auto"
    dtype: str = "auto"
    # How strongly a panel's pose (or other guide) holds, and the fraction of the steps it acts on.
    control_strength: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectSettings:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in ("guidance", "rate", "control_strength", "control_start", "control_end"):
            if name in values:
                values[name] = float(values[name])
        return cls(**values)


@dataclass
class Project:
    """A whole comic project: settings, cast, panels in story order, and the image store."""

    title: str = ""
    settings: ProjectSettings = field(default_factory=ProjectSettings)
    characters: list[ProjectCharacter] = field(default_factory=list)
    panels: list[ProjectPanel] = field(default_factory=list)
    layout: Layout = field(default_factory=Layout)  # comic pages: frames, balloons, page size
    animatic: Animatic = field(default_factory=Animatic)  # shots, cuts, video settings
    images: dict[str, bytes] = field(default_factory=dict, repr=False)  # file name -> PNG bytes
    id: str = field(default_factory=new_id)  # names the autosave of a project never saved
    created: str = field(default_factory=now_iso)
    modified: str = ""

    def __post_init__(self) -> None:
        if not self.modified:
            self.modified = self.created

    # ---- lookups ------------------------------------------------------------
    def character_by_id(self, character_id: str) -> ProjectCharacter | None:
        return next((c for c in self.characters if c.id == character_id), None)

    def character_by_name(self, name: str) -> ProjectCharacter | None:
        """The character called exactly ``name``, or None."""
        return next((c for c in self.characters if c.name == name), None)

    def panel_by_id(self, panel_id: str) -> ProjectPanel | None:
        return next((p for p in self.panels if p.id == panel_id), None)

    def panel_index(self, panel_id: str) -> int:
        """Position of the panel in story order; KeyError when no panel has this id."""
        for index, panel in enumerate(self.panels):
            if panel.id == panel_id:
                return index
        raise KeyError(f"There is no panel with id {panel_id!r} in this project.")

    # ---- the engine's view and story scripts ------------------------------
    def to_story(self) -> Story:
        """The story as the engine reads it; each panel's key is its id, so seeds follow the panel."""
        cast = [c.name for c in self.characters]
        return Story(
            characters=[Character(c.name, c.description, photo=self.images.get(c.photo) if c.photo else None,
                                  photo_strength=c.photo_strength) for c in self.characters],
            panels=[
                Panel(
                    key=panel.id,
                    prompt=_strip_no_character_tag(panel.prompt),  # "[NC] fog" typed in the app means "fog"
                    caption=panel.caption,
                    characters=panel.characters(cast),
                    variation=panel.variation,
                    size=panel.size,
                    regions=None if panel.regions is None else list(panel.regions),
                    guides=self._guides(panel, cast),
                )
                for panel in self.panels
            ],
            title=self.title,
        )

    def shown_regions(self, panel: ProjectPanel) -> list[Region]:
        """The boxes ``panel`` is drawn with, as the app shows them: none when the project lets every
        character's looks act on the whole panel (``settings.regions`` off)."""
        if not self.settings.regions:
            return []
        return panel.drawn_regions([c.name for c in self.characters])

    def _guides(self, panel: ProjectPanel, cast: list[str]) -> tuple:
        """The panel's ControlNet guides for the engine: its poses on one picture (each in its box)."""
        # A character's pose stands in its region (the default boxes are the columns in tag order).
        boxes = {r.character: r.box for r in panel.drawn_regions(cast)}
        guide = guide_of(panel.poses, panel.characters(cast), self.images, boxes or None)
        return () if guide is None else (guide,)

    @classmethod
    def from_story(cls, story: Story, title: str | None = None) -> Project:
        """A new project (fresh ids, default settings) holding the cast and panels of ``story``."""
        return cls(
            title=story.title if title is None else title,
            characters=[ProjectCharacter(name=c.name, description=c.description) for c in story.characters],
            panels=[
                ProjectPanel(prompt=_strip_no_character_tag(p.prompt), caption=p.caption, variation=p.variation)
                for p in story.panels
            ],
        )

    def import_script(self, text: str) -> None:
        """Replace the cast and panels with those of a story script (ScriptError if it has mistakes).

        Work already done survives a round trip through a text editor: a
        character with the same name keeps its id, photo and references (its
        description is updated), and a panel whose prompt is unchanged keeps
        its id, pictures, dialogue and timing (its caption is updated).
        """
        story = parse_script(text, title=self.title)  # parse first: a bad script changes nothing
        old_characters = {c.name: c for c in self.characters}
        characters = []
        for character in story.characters:
            kept = old_characters.get(character.name)
            if kept is None:
                kept = ProjectCharacter(name=character.name, description=character.description)
            else:
                kept.description = character.description
            characters.append(kept)

        unused: dict[str, list[ProjectPanel]] = {}
        for panel in self.panels:
            unused.setdefault(panel.prompt.strip(), []).append(panel)
        panels = []
        recaptioned: list[tuple[ProjectPanel, Words]] = []
        for source in story.panels:
            prompt = _strip_no_character_tag(source.prompt)
            matches = unused.get(prompt.strip())
            if matches:
                kept_panel = matches.pop(0)
                if kept_panel.caption != source.caption:
                    recaptioned.append((kept_panel, Words.of(kept_panel)))
                kept_panel.caption = source.caption
            else:
                kept_panel = ProjectPanel(prompt=prompt, caption=source.caption)
            panels.append(kept_panel)
        kept = {panel.id for panel in panels}
        for panel in self.panels:
            if panel.id not in kept:  # gone from the script: off the pages too
                remove_panel_everywhere(self.layout, panel.id)
        for panel, old_words in recaptioned:  # the pages letter the new captions
            follow_words(self.layout, panel, old_words)
        self.characters = characters
        self.panels = panels

    def words(self) -> dict[str, Words]:
        """Each panel's words (caption and dialogue lines) by panel id: what its lettering shows."""
        return words_of(self.panels)

    def resolve_words(self) -> None:
        """Fill the pages' balloons that show panels' words with those words (they keep no copy of their own)."""
        resolve_words(self.layout, self.words())

    def export_script(self) -> str:
        """The cast and panels as story script text (ValueError for text a script cannot hold)."""
        return format_script(self.to_story())

    # ---- the image store ----------------------------------------------------
    def add_image(self, png_bytes: bytes) -> str:
        """Keep a PNG in the image store and return its new file name."""
        data = bytes(png_bytes)
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("Only PNG images can be stored in a project.")
        name = f"img-{new_id()}.png"
        self.images[name] = data
        return name

    def add_version(self, panel_id: str, png_bytes: bytes, parameters: dict[str, Any]) -> int:
        """Add a picture to a panel, make it the chosen one and return its index."""
        panel = self.panel_by_id(panel_id)
        if panel is None:
            raise KeyError(f"There is no panel with id {panel_id!r} in this project.")
        name = self.add_image(png_bytes)
        panel.versions.append(ImageVersion(image=name, parameters=copy.deepcopy(dict(parameters))))
        panel.chosen = len(panel.versions) - 1
        return panel.chosen

    def add_reference(self, character_id: str, png_bytes: bytes, parameters: dict[str, Any]) -> int:
        """Add a generated reference picture to a character and return its index (it is not picked)."""
        character = self.character_by_id(character_id)
        if character is None:
            raise KeyError(f"There is no character with id {character_id!r} in this project.")
        name = self.add_image(png_bytes)
        character.references.append(ImageVersion(image=name, parameters=copy.deepcopy(dict(parameters))))
        return len(character.references) - 1

    def referenced_images(self) -> set[str]:
        """Names of the images that a panel version or pose, a character reference or a photo uses."""
        names = {version.image for panel in self.panels for version in panel.versions}
        names.update(pose.image for panel in self.panels for pose in panel.poses if pose.image)
        for cut in self.animatic.cuts.values():
            names.update(cut.clip)
        for character in self.characters:
            names.update(version.image for version in character.references)
            if character.photo:
                names.add(character.photo)
        return names

    def unused_images(self) -> list[str]:
        """Names in the image store that nothing uses any more, sorted."""
        return sorted(set(self.images) - self.referenced_images())

    def touch(self) -> None:
        """Set the modified time to now."""
        self.modified = now_iso()

    # ---- JSON -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything but the image store, as JSON-ready data."""
        return {
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "modified": self.modified,
            "settings": self.settings.to_dict(),
            "characters": [c.to_dict() for c in self.characters],
            "panels": [p.to_dict() for p in self.panels],
            "layout": self.layout.to_dict(),
            "animatic": self.animatic.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], images: dict[str, bytes] | None = None) -> Project:
        created = data.get("created") or now_iso()
        project = cls(
            id=data.get("id") or new_id(),
            title=data.get("title", ""),
            created=created,
            modified=data.get("modified") or created,
            settings=ProjectSettings.from_dict(data.get("settings", {})),
            characters=[ProjectCharacter.from_dict(item) for item in data.get("characters", [])],
            panels=[ProjectPanel.from_dict(item) for item in data.get("panels", [])],
            layout=Layout.from_dict(data.get("layout")),
            animatic=Animatic.from_dict(data.get("animatic")),
            images=dict(images or {}),
        )
        # lettering of a panel that is gone becomes free (or goes, if it only showed the panel's words)
        known = {panel.id for panel in project.panels}
        for panel_id in {b.panel for page in project.layout.pages for b in page.balloons} - known - {None}:
            remove_panel_everywhere(project.layout, panel_id)  # type: ignore[arg-type]
        project.resolve_words()
        return project

    @classmethod
    def example(cls) -> Project:
        """A new project holding the bundled example story (the lighthouse), with its dialogue.

        A story script has no dialogue, so the example's lines are kept beside
        it (``lighthouse.dialogue.json``: panel number -> its lines).
        """
        story = load_script(resource("examples", "lighthouse.story.txt"))
        project = cls.from_story(story, title=story.title.replace("-", " ").replace("_", " ").title())
        lines = json.loads(resource("examples", "lighthouse.dialogue.json").read_text(encoding="utf-8"))
        for number, dialogue in lines["panels"].items():
            project.panels[int(number) - 1].dialogue = "\n".join(dialogue)
        return project
