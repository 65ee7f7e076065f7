"""Attention processors put on a UNet in place of some of its own, and the originals put back.

Consistent self-attention, regional cross-attention and the video stage's
per-frame IP-Adapter each replace some of a UNet's processors for a run;
this is the one piece that swaps them in and restores them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class ProcessorSwap:
    """Base of the objects that install processors on :attr:`unet` (``install``/``uninstall``, or as a
    context manager). Subclasses call :meth:`_swap` from ``install`` and :meth:`_restore` from
    ``uninstall``; :attr:`installed` says whether their processors are on the UNet."""

    unet: torch.nn.Module
    _saved: dict[str, Any] | None = None  # the UNet's own processors while ours are installed

    @property
    def installed(self) -> bool:
        return self._saved is not None

    def _swap(self, replace: Callable[[str, Any], Any | None]) -> list[str]:
        """Put ``replace(module_name, processor)`` in place of each processor it returns one for (None keeps
        the processor) and return the processor names replaced; nothing is installed when none is."""
        saved = dict(self.unet.attn_processors)
        procs: dict[str, Any] = {}
        replaced = []
        for name, proc in saved.items():
            new = replace(name.removesuffix(".processor"), proc)
            procs[name] = proc if new is None else new
            if new is not None:
                replaced.append(name)
        if replaced:
            self._saved = saved
            self.unet.set_attn_processor(procs)
        return replaced

    def _restore(self) -> bool:
        """Put the UNet's own processors back; False when ours were not installed."""
        if self._saved is None:
            return False
        self.unet.set_attn_processor(self._saved)
        self._saved = None
        return True

    def install(self) -> ProcessorSwap:
        raise NotImplementedError

    def uninstall(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()
