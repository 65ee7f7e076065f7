"""The character bank: the sampled tokens a character's reference images leave behind.

During the write phase every consistent-attention layer stores, at every
denoising step, the tokens it sampled from each reference image. During the
read phase a panel that shows the character attends to those tokens. The bank
is kept per step as one flat tensor (all layers back to back), in host memory
by default, so that a whole step can be moved to the GPU with a single
non-blocking copy just before it is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

BANK_FORMAT = "storystudio-bank/1"


@dataclass(frozen=True)
class LayerSlot:
    """Where one layer's tokens sit inside a step's flat tensor."""

    offset: int
    shape: tuple[int, int, int]  # (cfg halves, tokens, channels)

    @property
    def numel(self) -> int:
        h, t, c = self.shape
        return h * t * c


@dataclass
class CharacterBank:
    """One character's bank: per step, the sampled tokens of every layer."""

    character: str
    slots: dict[str, LayerSlot]
    steps: list[torch.Tensor]
    # What made it: prompts, seeds, size, steps, model, consistency settings.
    # Enough to rebuild the bank exactly when the tensors were not kept.
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def dtype(self) -> torch.dtype:
        return self.steps[0].dtype

    @property
    def bytes_per_step(self) -> int:
        return self.steps[0].numel() * self.steps[0].element_size() if self.steps else 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.steps)

    @property
    def device(self) -> torch.device:
        return self.steps[0].device

    def layer(self, flat_step: torch.Tensor, name: str) -> torch.Tensor:
        """The (halves, tokens, channels) view of one layer inside a step's flat tensor."""
        slot = self.slots[name]
        return flat_step[slot.offset : slot.offset + slot.numel].view(slot.shape)

    def save(self, path: str | Path) -> None:
        """Write the bank as safetensors (tensors) with its recipe as JSON metadata."""
        from safetensors.torch import save_file

        tensors = {f"step_{i:04d}": t.detach().cpu().contiguous() for i, t in enumerate(self.steps)}
        meta = {
            "format": BANK_FORMAT,
            "character": self.character,
            "slots": json.dumps({k: [s.offset, list(s.shape)] for k, s in self.slots.items()}),
            "recipe": json.dumps(self.recipe),
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, pin_memory: bool | None = None) -> CharacterBank:
        """Read a bank written by :meth:`save` into host memory (pinned when CUDA is present)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"The character bank file {path} does not exist.")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != BANK_FORMAT:
                    raise ValueError(f"{path} is not a StoryStudio character bank.")
                keys = sorted(k for k in f.keys() if k.startswith("step_"))
                steps = [f.get_tensor(k) for k in keys]
        except (OSError, json.JSONDecodeError) as exc:  # pragma: no cover - depends on the damage
            raise ValueError(f"The character bank {path} cannot be read: {exc}") from exc
        if pin_memory is None:
            pin_memory = torch.cuda.is_available()
        if pin_memory:
            steps = [t.pin_memory() for t in steps]
        slots = {k: LayerSlot(off, tuple(shape)) for k, (off, shape) in json.loads(meta["slots"]).items()}
        return cls(meta["character"], slots, steps, json.loads(meta["recipe"]))


class BankWriter:
    """Collects one character's sampled tokens step by step during the write phase.

    Layers hand in their tokens as they run; at the end of a step the tensors
    are concatenated and copied to host memory on a side stream, so the GPU
    keeps at most one step of bank at a time.
    """

    def __init__(self, character: str, keep_on: str = "host"):
        self.character = character
        self.keep_on = keep_on
        self.slots: dict[str, LayerSlot] = {}
        self.steps: list[torch.Tensor] = []
        self._pending: list[tuple[str, torch.Tensor]] = []
        self._copy_stream: torch.cuda.Stream | None = None

    def put(self, layer: str, tokens: torch.Tensor) -> None:
        self._pending.append((layer, tokens))

    def end_step(self) -> None:
        if not self._pending:
            return
        if not self.slots:
            offset = 0
            for name, t in self._pending:
                self.slots[name] = LayerSlot(offset, tuple(t.shape))
                offset += t.numel()
        elif [n for n, _ in self._pending] != list(self.slots):
            raise RuntimeError("consistent attention layers ran in a different order between steps")
        flat = torch.cat([t.reshape(-1) for _, t in self._pending])
        self._pending.clear()
        self.steps.append(self._store(flat))

    def _store(self, flat: torch.Tensor) -> torch.Tensor:
        if self.keep_on == "device" or flat.device.type == "cpu":
            return flat
        if flat.device.type != "cuda":
            return flat.to("cpu")
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(flat.device)
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        self._copy_stream.wait_stream(torch.cuda.current_stream(flat.device))
        with torch.cuda.stream(self._copy_stream):
            host.copy_(flat, non_blocking=True)
        # The allocator must not hand this memory out again before the copy is done.
        flat.record_stream(self._copy_stream)
        return host

    def finish(self, recipe: dict[str, Any]) -> CharacterBank:
        self.end_step()
        if self._copy_stream is not None:
            self._copy_stream.synchronize()
        if not self.steps:
            raise RuntimeError(f"no bank was written for {self.character}")
        return CharacterBank(self.character, dict(self.slots), list(self.steps), recipe)


class BankFeed:
    """Serves the banks of the characters in a panel to the device, one step ahead.

    ``get(step)`` returns one flat tensor per bank for that step, already on the
    compute device, and starts the copy of the next step on a side stream so
    that it overlaps the current step's compute.
    """

    def __init__(self, banks: list[CharacterBank], device: torch.device):
        self.banks = banks
        self.device = torch.device(device)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._ahead: dict[int, tuple[list[torch.Tensor], torch.cuda.Event | None]] = {}

    def _launch(self, step: int) -> None:
        if step in self._ahead or any(step >= b.num_steps for b in self.banks):
            return
        if self._stream is None:
            flats = [b.steps[step].to(self.device) for b in self.banks]
            self._ahead[step] = (flats, None)
            return
        with torch.cuda.stream(self._stream):
            flats = [b.steps[step].to(self.device, non_blocking=True) for b in self.banks]
            event = torch.cuda.Event()
            event.record(self._stream)
        self._ahead[step] = (flats, event)

    def get(self, step: int) -> list[torch.Tensor]:
        self._launch(step)
        flats, event = self._ahead.pop(step)
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for f in flats:
                f.record_stream(current)
        self._launch(step + 1)
        return flats

    def close(self) -> None:
        self._ahead.clear()
