"""The character bank: the sampled tokens a character's reference images leave behind.

During the write phase every consistent-attention layer stores, at every
denoising step, the tokens it sampled from each reference image. During the
read phase a panel that shows the character attends to those tokens. The bank
is kept as one row per step (all layers back to back), in host memory by
default, so that a whole step can be moved to the GPU with a single
non-blocking copy while the step before it is computed.
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
    """One character's bank: for every step, the sampled tokens of every layer.

    ``data`` has one row per denoising step; a row holds all layers back to back.
    """

    character: str
    slots: dict[str, LayerSlot]
    data: torch.Tensor  # (steps, values per step)
    # What made it: prompts, seeds, size, steps, model, consistency settings.
    # Enough to rebuild the bank exactly when the tensors were not kept.
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return self.data.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def bytes_per_step(self) -> int:
        return self.data.shape[1] * self.data.element_size()

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    @property
    def device(self) -> torch.device:
        return self.data.device

    def layer(self, flat_step: torch.Tensor, name: str) -> torch.Tensor:
        """The (halves, tokens, channels) view of one layer inside a step's row."""
        slot = self.slots[name]
        return flat_step[slot.offset : slot.offset + slot.numel].view(slot.shape)

    def save(self, path: str | Path) -> None:
        """Write the bank as safetensors (tensors) with its recipe as JSON metadata (atomically)."""
        from safetensors.torch import save_file

        meta = {
            "format": BANK_FORMAT,
            "character": self.character,
            "slots": json.dumps({k: [s.offset, list(s.shape)] for k, s in self.slots.items()}),
            "recipe": json.dumps(self.recipe),
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        save_file({"data": self.data.detach().to("cpu").contiguous()}, str(tmp), metadata=meta)
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
                data = f.get_tensor("data")
            slots = {k: LayerSlot(off, tuple(shape)) for k, (off, shape) in json.loads(meta["slots"]).items()}
            recipe = json.loads(meta["recipe"])
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"The character bank {path} cannot be read ({exc}).") from exc
        except Exception as exc:  # safetensors reports a damaged header with its own error type
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"The character bank {path} is damaged and cannot be read.") from exc
        if pin_memory is None:
            pin_memory = torch.cuda.is_available()
        if pin_memory:
            data = data.pin_memory()
        return cls(meta["character"], slots, data, recipe)


class BankWriter:
    """Collects one character's sampled tokens step by step during the write phase.

    Layers hand in their tokens as they run; at the end of a step they are
    concatenated into that step's row. With the bank in host memory, the row
    is pinned memory allocated once for all expected steps (page-locking per
    step would cost more than the step) and filled by a non-blocking copy on
    a side stream, so the GPU holds at most one step of bank at a time.
    """

    def __init__(self, character: str, keep_on: str = "host", expected_steps: int = 50):
        self.character = character
        self.keep_on = keep_on
        self.expected_steps = max(1, int(expected_steps))
        self.slots: dict[str, LayerSlot] = {}
        self._data: torch.Tensor | None = None
        self._rows = 0
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
        self._store(flat)

    def _allocate(self, rows: int, flat: torch.Tensor) -> torch.Tensor:
        if self.keep_on == "device" or flat.device.type == "cpu":
            return torch.empty((rows, flat.numel()), dtype=flat.dtype, device=flat.device)
        return torch.empty((rows, flat.numel()), dtype=flat.dtype, pin_memory=flat.device.type == "cuda")

    def _store(self, flat: torch.Tensor) -> None:
        if self._data is None:
            self._data = self._allocate(self.expected_steps, flat)
        elif self._rows == self._data.shape[0]:  # more steps than expected: grow
            self._sync()
            bigger = self._allocate(2 * self._rows, flat)
            bigger[: self._rows].copy_(self._data)
            self._data = bigger
        row = self._data[self._rows]
        self._rows += 1
        if flat.device.type != "cuda" or row.device.type == "cuda":
            row.copy_(flat)
            return
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(flat.device)
        self._copy_stream.wait_stream(torch.cuda.current_stream(flat.device))
        with torch.cuda.stream(self._copy_stream):
            row.copy_(flat, non_blocking=True)
        # The allocator must not hand this memory out again before the copy is done.
        flat.record_stream(self._copy_stream)

    def _sync(self) -> None:
        if self._copy_stream is not None:
            self._copy_stream.synchronize()

    def finish(self, recipe: dict[str, Any]) -> CharacterBank:
        self.end_step()
        self._sync()
        if self._data is None:
            raise RuntimeError(f"no bank was written for {self.character}")
        return CharacterBank(self.character, dict(self.slots), self._data[: self._rows], recipe)


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
            flats = [b.data[step].to(self.device) for b in self.banks]
            self._ahead[step] = (flats, None)
            return
        with torch.cuda.stream(self._stream):
            flats = [b.data[step].to(self.device, non_blocking=True) for b in self.banks]
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
