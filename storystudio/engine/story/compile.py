"""The compiled path: the UNet's repeated blocks through ``torch.compile``, with an on-disk cache.

Compiling the transformer and ResNet blocks one by one ("regional"
compilation) gives most of what compiling the whole UNet gives, at a
fraction of the one-time cost: every block of one shape shares one compiled
graph (the consistent-attention processors keep per-layer data in tensors,
not Python values, for that reason). The compiled code is cached in
StoryStudio's cache folder, so a second start of the app or of ``render``
loads it instead of compiling again.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

COMPILED_FLAG = "_storystudio_compiled"
# Distinct graphs one block may need in a story: {plain, write, read} x {step 0, later} x sizes x batch sizes.
CACHE_SIZE_LIMIT = 64


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept between runs (``$STORYSTUDIO_COMPILE_CACHE`` overrides)."""
    own = os.environ.get("STORYSTUDIO_COMPILE_CACHE")
    if own:
        return Path(own).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("StoryStudio", appauthor=False) / "torch-compile"


def use_compile_cache() -> Path:
    """Point inductor's caches at StoryStudio's cache folder (before the first compile).

    ``$STORYSTUDIO_COMPILE_CACHE`` is StoryStudio's own setting and wins; otherwise a folder the user gave
    torch (``$TORCHINDUCTOR_CACHE_DIR``) is kept, and only an unset one points at StoryStudio's cache.
    """
    folder = compile_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if os.environ.get("STORYSTUDIO_COMPILE_CACHE"):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    else:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def compiled_blocks(unet: torch.nn.Module, kinds: tuple[str, ...] = ("transformer", "resnet")) -> list[torch.nn.Module]:
    """The repeated blocks that are compiled: transformer blocks (where consistent attention runs), ResNet blocks."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D

    classes = tuple({"transformer": BasicTransformerBlock, "resnet": ResnetBlock2D}[k] for k in kinds)
    return [m for m in unet.modules() if isinstance(m, classes)]


def allow_recompiles(limit: int = CACHE_SIZE_LIMIT) -> None:
    """Let one block keep ``limit`` compiled variants (torch's default of 8 is fewer than a story needs)."""
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # renamed in newer torch; set whichever exists
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), limit))
    if hasattr(config, "accumulated_recompile_limit"):
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 8 * limit)
    elif hasattr(config, "accumulated_cache_size_limit"):
        config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 8 * limit)


def compile_unet(unet: torch.nn.Module, backend: str = "inductor", mode: str | None = None,
                 kinds: tuple[str, ...] = ("transformer", "resnet")) -> int:
    """Compile the UNet's repeated blocks in place (once per UNet); returns how many blocks were compiled.

    ``fullgraph=True``: a graph break inside a block is an error, not a silent slowdown.
    """
    if getattr(unet, COMPILED_FLAG, None) == (backend, mode):
        return 0
    if backend == "inductor":
        use_compile_cache()
    allow_recompiles()
    blocks = compiled_blocks(unet, kinds)
    for block in blocks:
        block.compile(backend=backend, mode=mode, fullgraph=True, dynamic=False)
    setattr(unet, COMPILED_FLAG, (backend, mode))
    return len(blocks)
