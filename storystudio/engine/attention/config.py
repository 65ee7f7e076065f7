"""How consistent attention is set up: its strength, where it acts and when (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class ConsistencyConfig:
    """How strongly, where and when consistent attention acts.

    Defaults are those of the StoryDiffusion reference demo: sampling rate 0.5
    at both resolutions, consistent attention on the self-attention of the
    decoder (up) blocks, plain attention at step 0, then consistent attention
    with probability 0.7 per layer and step, 0.9 from step 20 on.
    """

    rate_coarse: float = 0.5  # the coarsest resolution it acts on ("sa32" in the reference code)
    rate_fine: float = 0.5  # every finer resolution ("sa64")
    # (first step, probability) pairs, ascending; before the first pair attention is plain.
    schedule: tuple[tuple[int, float], ...] = ((1, 0.7), (20, 0.9))
    layers: tuple[str, ...] = ("up_blocks",)  # name prefixes of the blocks whose attn1 it replaces

    def __post_init__(self) -> None:
        for name in ("rate_coarse", "rate_fine"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        object.__setattr__(self, "schedule", tuple((int(s), float(p)) for s, p in self.schedule))
        object.__setattr__(self, "layers", tuple(self.layers))
        if any(not 0.0 <= p <= 1.0 for _, p in self.schedule):
            raise ValueError("schedule probabilities must be between 0 and 1")

    def probability(self, step: int) -> float:
        prob = 0.0
        for start, p in self.schedule:
            if step >= start:
                prob = p
        return prob

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schedule"] = [list(x) for x in self.schedule]
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConsistencyConfig:
        return cls(
            rate_coarse=d["rate_coarse"],
            rate_fine=d["rate_fine"],
            schedule=tuple(tuple(x) for x in d["schedule"]),
            layers=tuple(d["layers"]),
        )


class Phase(str, Enum):
    """What a UNet call draws: plain pictures, a character's references (write), panels reading them."""

    PLAIN = "plain"
    WRITE = "write"
    READ = "read"
