"""How a story is drawn: the generation settings, their checks and the per-panel seeds (torch-free).

The app's project settings and the command line's options both become a
:class:`GenerationSettings` here, through :meth:`GenerationSettings.from_project`:
one conversion, one set of rules.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from ...project import limits
from ...project.story import Story
from ..attention.config import ConsistencyConfig
from ..errors import InputError
from .styles import get_style

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}
FREEU_DEFAULT = dict(s1=0.6, s2=0.4, b1=1.1, b2=1.2)  # the reference demo's values


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


def derive_seed(story_seed: int, key: str, variation: int = 0) -> int:
    """A panel's seed from the story seed, its key and its variation number."""
    digest = hashlib.sha256(f"{story_seed}:{key}:{variation}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF


def size_problems(width: int, height: int, multiple: int, family: str | None = None) -> list[str]:
    """What is wrong with a picture size for a model whose UNet needs ``multiple`` (empty when nothing).

    ``family`` (sd15, sd2, sdxl) sets the largest size (``limits.max_picture_side``); unknown, the
    largest of all families applies.
    """
    problem = limits.picture_size_problem(width, height, family)
    problems = [problem] if problem else []
    if width % multiple or height % multiple:
        problems.append(f"width and height must be multiples of {multiple} for this model")
    return problems


def check_panel_sizes(story: Story, multiple: int, family: str | None = None) -> None:
    """InputError for a story too long for one render, or naming the first panel whose own size the
    model cannot draw."""
    if len(story.panels) > limits.MAX_PANELS:
        raise InputError(f"The story has {len(story.panels)} panels; StoryStudio draws at most "
                         f"{limits.MAX_PANELS} in one story. Split it into parts.")
    if len(story.characters) > limits.MAX_CHARACTERS:
        raise InputError(f"The story has {len(story.characters)} characters; a cast may have at most "
                         f"{limits.MAX_CHARACTERS}.")
    for number, panel in enumerate(story.panels, 1):
        if panel.size is None:
            continue
        size = tuple(panel.size)
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise InputError(f"Panel {number} has a size that is not a width and a height in whole pixels.")
        problems = size_problems(*size, multiple, family)
        if problems:
            raise InputError(f"Panel {number} is set to {size[0]}x{size[1]} pixels: {'; '.join(problems)}.")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_CONTROL_STRENGTH = limits.MAX_CONTROL_STRENGTH


def control_problems(strength: Any, start: Any, end: Any) -> list[str]:
    """What is wrong with a guide's strength and step range (empty when nothing)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    problems = []
    if not (number(strength) and 0 <= strength <= MAX_CONTROL_STRENGTH):
        problems.append(f"the pose strength must be a number from 0 to {MAX_CONTROL_STRENGTH:g}")
    if not (number(start) and number(end) and 0 <= start < end <= 1):
        problems.append("the pose's steps must be a range from 0 to 1 whose start comes before its end")
    return problems


@dataclass
class GenerationSettings:
    steps: int = 35
    width: int = 768
    height: int = 768
    guidance: float = 5.0
    seed: int = 0
    style: str | None = None
    negative_prompt: str = ""
    scheduler: str = "ddim"
    freeu: bool = True
    id_length: int = 4
    # Pictures denoised together in one UNet call; 0 chooses from the GPU's free memory, the size and the model.
    batch_size: int = 0
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    # Run the UNet through torch.compile (a one-time cost per shape, cached on disk; faster afterwards).
    compile: bool = False
    # Panels of two or more characters drawn with one region per character (each region reads only its
    # character's bank and text); False reads every character's bank everywhere, as the reference code does.
    regions: bool = True
    # Where the reference photos' IP-Adapter face model is: a folder laid out like h94/IP-Adapter or a Hub id
    # in the Hugging Face cache; empty: h94/IP-Adapter.
    photo_adapter: str = ""
    # ControlNet guides (a panel's pose, depth map, line art): how strongly they hold, the fraction of the
    # steps they act on, and which ControlNet draws each kind (a folder, catalog id or Hub id; missing or
    # empty: the catalog's default for the model's architecture).
    control_strength: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0
    control_models: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_project(cls, project_settings: Any, **overrides: Any) -> GenerationSettings:
        """The settings for a project's ``ProjectSettings``; ``overrides`` (``None`` values ignored) win.

        ``rate`` (the project's one consistency strength) sets both sampling rates.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        rate = given.pop("rate", getattr(project_settings, "rate", 0.5))
        ours = {f.name for f in fields(cls)}
        unknown = set(given) - ours
        if unknown:
            raise TypeError(f"unknown generation settings: {', '.join(sorted(unknown))}")
        values = {name: getattr(project_settings, name) for name in ours if hasattr(project_settings, name)}
        values.update(given)
        values.setdefault("consistency", replace(ConsistencyConfig(), rate_coarse=float(rate), rate_fine=float(rate)))
        return cls(**values)

    def validate(self, multiple: int = 8, family: str | None = None) -> None:
        """InputError in one plain sentence when the settings cannot be drawn with (``multiple``: the UNet's;
        ``family``: the model's, for the largest picture size). The limits are those of ``project.limits``."""
        problems = []
        if not _whole(self.steps) or not 1 <= self.steps <= limits.MAX_STEPS:
            problems.append(f"steps must be a whole number from 1 to {limits.MAX_STEPS}")
        if not (_whole(self.width) and _whole(self.height)):
            problems.append("width and height must be whole numbers of pixels")
        else:
            problems += size_problems(self.width, self.height, multiple, family)
        if not (isinstance(self.guidance, (int, float)) and math.isfinite(self.guidance)
                and 0 <= self.guidance <= limits.MAX_GUIDANCE):  # refuses NaN and infinity too
            problems.append(f"guidance must be a number from 0 to {limits.MAX_GUIDANCE:g}")
        if not _whole(self.seed) or not 0 <= self.seed <= limits.MAX_SEED:
            problems.append(f"the seed must be a whole number from 0 to {limits.MAX_SEED}")
        if not _whole(self.id_length) or not 1 <= self.id_length <= limits.MAX_ID_LENGTH:
            problems.append(f"the number of reference images (id_length) must be from 1 to {limits.MAX_ID_LENGTH}")
        if not _whole(self.batch_size) or not 0 <= self.batch_size <= limits.MAX_BATCH_SIZE:
            problems.append(f"batch size must be from 1 to {limits.MAX_BATCH_SIZE} (or 0 to choose automatically)")
        if not isinstance(self.negative_prompt, str) or len(self.negative_prompt) > limits.MAX_TEXT_CHARS:
            problems.append(f"the negative prompt must be text of at most {limits.MAX_TEXT_CHARS} characters")
        problems += control_problems(self.control_strength, self.control_start, self.control_end)
        if self.scheduler not in SCHEDULERS:
            problems.append(f"unknown scheduler {limits.quote(self.scheduler)} (choose {', '.join(SCHEDULERS)})")
        if problems:
            text = "; ".join(problems)
            raise InputError(text[0].upper() + text[1:] + ".")
        try:
            get_style(self.style)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance runs (an unconditional half in every UNet call)."""
        return self.guidance > 1

    def to_dict(self) -> dict[str, Any]:
        return dict(
            steps=self.steps, width=self.width, height=self.height, guidance=self.guidance, seed=self.seed,
            style=get_style(self.style).name, negative_prompt=self.negative_prompt, scheduler=self.scheduler,
            freeu=self.freeu, id_length=self.id_length, batch_size=self.batch_size,
            consistency=self.consistency.to_dict(), compile=self.compile, regions=self.regions,
            control=dict(strength=self.control_strength, start=self.control_start, end=self.control_end,
                         models=dict(self.control_models)),
        )
