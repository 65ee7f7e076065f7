"""What this computer can draw on (no Qt, no torch): found by the worker's warm-up, remembered in the preferences.

The GUI thread never imports torch, so it learns about the graphics card
from the worker; until then it uses what the last start found.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Machine:
    summary: str = "CPU"  # the compute device in words, e.g. "NVIDIA RTX 4090, 24 GiB"
    gpu_gb: float | None = None  # the graphics card's memory; None without one
    devices: tuple[str, ...] = field(default=("cpu",))  # what it can draw on: "cuda", "mps", "cpu"

    @property
    def gpu(self) -> bool:
        return any(d != "cpu" for d in self.devices)

    def device_summary(self, device: str) -> str:
        """The words for the device a project asks for ("auto" is the best there is), as speeds are keyed."""
        if device in ("", "auto", None):
            return self.summary
        if device == "cpu":
            return "CPU"
        return self.summary if device in self.devices else device

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "devices": list(self.devices)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Machine | None:
        if not data or "summary" not in data:
            return None
        try:
            gb = data.get("gpu_gb")
            return cls(str(data["summary"]), float(gb) if gb not in (None, "") else None,
                       tuple(str(d) for d in data.get("devices") or ("cpu",)))
        except (TypeError, ValueError):
            return None
