"""How a story is drawn: the generation settings, their checks and the per-panel seeds (torch-free).

The app's project settings and the command line's options both become a
:class:`GenerationSettings` here, through :meth:`GenerationSettings.from_project`:
one conversion, one set of rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

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


def size_problems(width: int, height: int, multiple: int) -> list[str]:
    """What is wrong with a picture size for a model whose UNet needs ``multiple`` (empty when nothing)."""
    problems = []
    if width < 64 or height < 64:
        problems.append("the image must be at least 64x64 pixels")
    if width % multiple or height % multiple:
        problems.append(f"width and height must be multiples of {multiple} for this model")
    return problems


def check_panel_sizes(story: Story, multiple: int) -> None:
    """InputError naming the first panel whose own size the model cannot draw."""
    for number, panel in enumerate(story.panels, 1):
        if panel.size is None:
            continue
        size = tuple(panel.size)
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise InputError(f"Panel {number} has a size that is not a width and a height in whole pixels.")
        problems = size_problems(*size, multiple)
        if problems:
            raise InputError(f"Panel {number} is set to {size[0]}x{size[1]} pixels: {'; '.join(problems)}.")


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

    def validate(self, multiple: int = 8) -> None:
        """InputError in one plain sentence when the settings cannot be drawn with (``multiple``: the UNet's)."""
        problems = []
        if self.steps < 1:
            problems.append("steps must be at least 1")
        problems += size_problems(self.width, self.height, multiple)
        if not self.guidance >= 0:  # also refuses NaN
            problems.append("guidance must be a number of 0 or more")
        if self.id_length < 1:
            problems.append("the number of reference images (id_length) must be at least 1")
        if self.batch_size < 0:
            problems.append("batch size must be at least 1 (or 0 to choose automatically)")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"unknown scheduler {self.scheduler!r} (choose {', '.join(SCHEDULERS)})")
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
            consistency=self.consistency.to_dict(), compile=self.compile,
        )
