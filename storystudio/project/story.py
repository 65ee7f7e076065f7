"""The story as plain data: a cast of characters and an ordered list of panels."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .pose import Guide
from .regions import Region

#: How strongly a character's reference photo steers its look unless the user says otherwise.
DEFAULT_PHOTO_STRENGTH = 0.6

#: Tag written in a prompt to mean "this panel shows no character".
NO_CHARACTER = "NC"

#: A bracketed tag such as ``[Ann]``; group 1 is the name before stripping.
TAG_PATTERN = re.compile(r"\[([^\[\]]*)\]")


@dataclass
class ReferenceSet:
    """A character's reference pictures pinned by the user, drawn exactly so whenever its panels are drawn.

    ``keys``, ``prompts`` (characters expanded, before the style) and ``seeds``
    name the pictures drawn together; ``chosen`` the ones whose look the panels
    take (all when ``None``). A key that is a story panel whose prompt and seed
    are unchanged keeps that panel's picture.
    """

    keys: list[str]
    prompts: list[str]
    seeds: list[int]
    chosen: list[int] | None = None


@dataclass
class Character:
    """A recurring character, described once and reused in every panel."""

    name: str
    description: str
    references: ReferenceSet | None = None  # pinned references (a locked character); None: its first solo panels
    photo: bytes | None = None  # a reference photo (PNG or JPEG bytes) whose look the pictures of it take
    photo_strength: float = DEFAULT_PHOTO_STRENGTH  # how strongly the photo steers the look (0: not at all)


@dataclass
class Panel:
    """One picture of the story, with its prompt, caption and tagged characters."""

    key: str
    prompt: str
    caption: str = ""
    characters: list[str] = field(default_factory=list)
    source_line: int | None = None
    variation: int = 0  # 0 is the panel's own seed; each new number draws another picture
    # (width, height) in pixels, the shape of the comic frame the picture goes into;
    # None draws it at the story's generation size.
    size: tuple[int, int] | None = None
    # Where each character stands when it shows several (see project.regions); None: side by side in tag order.
    regions: list[Region] | None = None
    # ControlNet guides (project.pose.Guide: a pose, a depth map, line art), at most one of each kind.
    guides: tuple[Guide, ...] = ()

    @property
    def has_characters(self) -> bool:
        """Whether any character is tagged in this panel."""
        return bool(self.characters)


@dataclass
class Story:
    """A cast and the panels that use it, in reading order."""

    characters: list[Character]
    panels: list[Panel]
    title: str = ""

    def character(self, name: str) -> Character:
        """Return the character called ``name`` (exact match); KeyError if unknown."""
        for character in self.characters:
            if character.name == name:
                return character
        cast = ", ".join(c.name for c in self.characters) or "none"
        raise KeyError(f"There is no character named [{name}] in this story (characters: {cast}).")

    def expand(self, panel: Panel) -> str:
        """Return the panel's prompt with every ``[Name]`` replaced by that character's description."""
        return TAG_PATTERN.sub(
            lambda match: self.character(match.group(1).strip()).description, panel.prompt
        )

    def solo_panels(self, name: str) -> list[Panel]:
        """Panels showing ``name`` and nobody else, in story order."""
        return [panel for panel in self.panels if panel.characters == [name]]

    def reference_panels(self, name: str, id_length: int) -> list[Panel]:
        """The first ``id_length`` solo panels of ``name`` (fewer if the story has fewer)."""
        if id_length < 0:
            raise ValueError(f"id_length must be 0 or more, not {id_length}.")
        return self.solo_panels(name)[:id_length]
