"""Character banks kept beyond one step: saved to disk, loaded back, or held in a bounded cache.

By default a story never keeps a bank: its references are denoised in the
same step loop as its panels and each step's bank is dropped when the step
ends (see :mod:`.consistent`). A bank that outlives its step is for
regenerating panels later without drawing the references again: ``render
--save-banks`` and ``--banks``, or a :class:`BankCache` within a memory budget.

A :class:`CharacterBank` holds, for every step, the sampled keys and values
of every consistent-attention layer, exactly the tensors the panels of that
step read in flight, so a panel read from a kept bank is the same picture as
one drawn beside its references. The rows live in host memory (pinned when
CUDA is there) and are streamed to the GPU one step ahead (:class:`BankFeed`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .consistent import StepBank

BANK_FORMAT = "storystudio-bank/2"  # /1 held hidden states; /2 holds the projected keys and values


@dataclass(frozen=True)
class LayerSlot:
    """Where one layer's keys (and, right after them, its values) sit inside a step's flat row."""

    offset: int
    shape: tuple[int, int, int, int]  # (guidance halves, reference images, sampled tokens, channels)

    @property
    def numel(self) -> int:
        h, n, t, c = self.shape
        return h * n * t * c


@dataclass
class CharacterBank:
    """One character's bank: for every step, the sampled keys and values of every layer."""

    character: str
    slots: dict[str, LayerSlot]  # by layer name, in the order of the UNet's consistent-attention layers
    data: torch.Tensor  # (steps, values per step)
    # What made it: model, prompts, seeds, size, steps, consistency settings; ``recipe_key`` hashes it.
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

    def step_bank(self, row: torch.Tensor, layer_names: Sequence[str]) -> StepBank:
        """The :class:`StepBank` of one step's row (already on the device), layers in ``layer_names`` order."""
        missing = [n for n in layer_names if n not in self.slots]
        if missing:
            raise ValueError(f"The bank of [{self.character}] was made with other consistency layers; "
                             "generate its references again.")
        keys, values = [], []
        for name in layer_names:
            slot = self.slots[name]
            keys.append(row[slot.offset : slot.offset + slot.numel].view(slot.shape))
            values.append(row[slot.offset + slot.numel : slot.offset + 2 * slot.numel].view(slot.shape))
        return StepBank(keys, values)

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
        try:
            save_file({"data": self.data.detach().to("cpu").contiguous()}, str(tmp), metadata=meta)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

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
                if meta.get("format") == "storystudio-bank/1":
                    raise ValueError(f"{path} was saved by an older StoryStudio; save the banks again.")
                if meta.get("format") != BANK_FORMAT:
                    raise ValueError(f"{path} is not a StoryStudio character bank.")
                data = f.get_tensor("data")
            slots = {k: LayerSlot(int(off), tuple(int(x) for x in shape))
                     for k, (off, shape) in json.loads(meta["slots"]).items()}
            recipe = json.loads(meta["recipe"])
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"The character bank {path} cannot be read ({exc}).") from exc
        except ValueError:
            raise
        except Exception as exc:  # safetensors reports a damaged header with its own error type
            raise ValueError(f"The character bank {path} is damaged and cannot be read.") from exc
        if data.ndim != 2 or any(s.offset + 2 * s.numel > data.shape[1] for s in slots.values()):
            raise ValueError(f"The character bank {path} is damaged and cannot be read.")
        if pin_memory is None:
            pin_memory = torch.cuda.is_available()
        if pin_memory:
            data = data.pin_memory()
        return cls(str(meta["character"]), slots, data, recipe)


def recipe_key(recipe: dict[str, Any]) -> str:
    """A short stable name for what made a bank (the same references, settings and model give the same key)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:32]


class BankWriter:
    """Keeps every step of one character's bank, as a story's write calls leave it.

    A step's layers are concatenated into one row and copied into pinned host
    memory allocated once for all steps (page-locking per step would cost more
    than the step), on a side CUDA stream, so the GPU still holds at most one
    step of bank at a time.
    """

    def __init__(self, character: str, layer_names: Sequence[str], steps: int):
        self.character = character
        self.layer_names = list(layer_names)
        self.steps = max(1, int(steps))
        self.slots: dict[str, LayerSlot] = {}
        self._data: torch.Tensor | None = None
        self._rows = 0
        self._copy_stream: Any = None

    def put(self, bank: StepBank) -> None:
        parts = []
        for name, k, v in zip(self.layer_names, bank.keys, bank.values):
            if bank.chosen is not None:
                k, v = k[:, bank.chosen], v[:, bank.chosen]
            parts += [k.reshape(-1), v.reshape(-1)]
            if name not in self.slots:
                offset = sum(2 * s.numel for s in self.slots.values())
                self.slots[name] = LayerSlot(offset, tuple(k.shape))
        flat = torch.cat(parts) if parts else torch.zeros(0)
        if self._data is None:
            pinned = flat.device.type == "cuda"
            self._data = torch.empty((self.steps, flat.numel()), dtype=flat.dtype, pin_memory=pinned)
        if self._rows >= self._data.shape[0]:
            raise RuntimeError(f"more steps than the {self.steps} expected were written for {self.character}")
        row = self._data[self._rows]
        self._rows += 1
        if flat.device.type != "cuda":
            row.copy_(flat)
            return
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(flat.device)
        self._copy_stream.wait_stream(torch.cuda.current_stream(flat.device))
        with torch.cuda.stream(self._copy_stream):
            row.copy_(flat, non_blocking=True)
        flat.record_stream(self._copy_stream)  # the allocator must not reuse it before the copy is done

    def finish(self, recipe: dict[str, Any]) -> CharacterBank:
        if self._copy_stream is not None:
            self._copy_stream.synchronize()
        if self._data is None:
            raise RuntimeError(f"no bank was written for {self.character}")
        return CharacterBank(self.character, dict(self.slots), self._data[: self._rows], dict(recipe))


class BankFeed:
    """Serves kept banks to the device one step ahead: ``get(step)`` gives each character's :class:`StepBank`.

    The copy of step s+1 starts on a side stream when step s is handed out, so
    it overlaps step s's compute.
    """

    def __init__(self, banks: dict[str, CharacterBank], layer_names: Sequence[str], device: torch.device | str):
        self.banks = dict(banks)
        self.layer_names = list(layer_names)
        self.device = torch.device(device)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._ahead: dict[int, tuple[dict[str, torch.Tensor], Any]] = {}

    def _launch(self, step: int) -> None:
        if step in self._ahead or any(step >= b.num_steps for b in self.banks.values()):
            return
        if self._stream is None:
            self._ahead[step] = ({n: b.data[step].to(self.device) for n, b in self.banks.items()}, None)
            return
        with torch.cuda.stream(self._stream):
            rows = {n: b.data[step].to(self.device, non_blocking=True) for n, b in self.banks.items()}
            event = torch.cuda.Event()
            event.record(self._stream)
        self._ahead[step] = (rows, event)

    def get(self, step: int) -> dict[str, StepBank]:
        short = [b for b in self.banks.values() if step >= b.num_steps]
        if short:
            raise ValueError(f"The kept references of [{short[0].character}] were made with {short[0].num_steps} "
                             "steps; this picture needs more. Use the same number of steps or draw the references "
                             "again.")
        self._launch(step)
        rows, event = self._ahead.pop(step)
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for row in rows.values():
                row.record_stream(current)
        self._launch(step + 1)
        return {n: self.banks[n].step_bank(rows[n], self.layer_names) for n in rows}


class BankCache:
    """Kept banks within a memory budget: host memory first, then a disk folder; least recently used go first.

    A budget of 0 keeps nothing there. ``get`` and ``put`` are safe to call from
    one worker thread while another reads :attr:`usage`.
    """

    def __init__(self, ram_bytes: int = 0, disk_bytes: int = 0, folder: str | Path | None = None):
        self.ram_bytes = max(0, int(ram_bytes))
        self.disk_bytes = max(0, int(disk_bytes)) if folder is not None else 0
        self.folder = Path(folder) if folder is not None else None
        self._ram: OrderedDict[str, CharacterBank] = OrderedDict()
        self._disk: OrderedDict[str, int] = OrderedDict()  # key -> bytes of its file
        self._lock = threading.Lock()
        if self.folder is not None and self.disk_bytes:
            self._scan_disk()

    @property
    def budget(self) -> int:
        return self.ram_bytes + self.disk_bytes

    def fits(self, nbytes: int) -> bool:
        """Whether a bank of ``nbytes`` can be kept at all (smaller than one of the two budgets)."""
        return nbytes <= max(self.ram_bytes, self.disk_bytes)

    @property
    def usage(self) -> tuple[int, int]:
        """Bytes held in host memory and on disk."""
        with self._lock:
            return sum(b.nbytes for b in self._ram.values()), sum(self._disk.values())

    def _file(self, key: str) -> Path:
        return self.folder / f"{key}.bank.safetensors"

    def _scan_disk(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for part in self.folder.glob("*.part"):
            part.unlink(missing_ok=True)  # an interrupted save
        files = sorted(self.folder.glob("*.bank.safetensors"), key=lambda p: p.stat().st_mtime)
        for f in files:
            self._disk[f.name.removesuffix(".bank.safetensors")] = f.stat().st_size
        self._trim_disk()

    def get(self, key: str) -> CharacterBank | None:
        with self._lock:
            if key in self._ram:
                self._ram.move_to_end(key)
                return self._ram[key]
            if key not in self._disk:
                return None
            self._disk.move_to_end(key)
        try:
            bank = CharacterBank.load(self._file(key))
        except (OSError, ValueError):
            with self._lock:
                self._disk.pop(key, None)
            return None
        self._file(key).touch()
        return bank

    def put(self, key: str, bank: CharacterBank) -> None:
        if not self.fits(bank.nbytes):
            return
        with self._lock:
            if bank.nbytes <= self.ram_bytes:
                self._ram[key] = bank
                self._ram.move_to_end(key)
                spill = self._trim_ram()
            else:
                spill = [(key, bank)]
        for k, b in spill:
            self._to_disk(k, b)

    def _trim_ram(self) -> list[tuple[str, CharacterBank]]:
        dropped = []
        while self._ram and sum(b.nbytes for b in self._ram.values()) > self.ram_bytes:
            dropped.append(self._ram.popitem(last=False))
        return dropped

    def _to_disk(self, key: str, bank: CharacterBank) -> None:
        if self.folder is None or bank.nbytes > self.disk_bytes:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            bank.save(self._file(key))
        except OSError:
            return  # a full disk only means the bank is drawn again next time
        with self._lock:
            self._disk[key] = self._file(key).stat().st_size
            self._disk.move_to_end(key)
            self._trim_disk()

    def _trim_disk(self) -> None:
        while self._disk and sum(self._disk.values()) > self.disk_bytes:
            key, _ = self._disk.popitem(last=False)
            self._file(key).unlink(missing_ok=True)

    def clear(self) -> None:
        with self._lock:
            self._ram.clear()
            for key in list(self._disk):
                self._file(key).unlink(missing_ok=True)
            self._disk.clear()
