"""Latents to pictures: fast previews, safe VAE decoding, PNG files that remember how they were made."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image, PngImagePlugin

# Linear maps from the 4 latent channels to RGB, fitted by the community for live
# previews of SD1.x/2.x and SDXL latents: good enough to see composition and colour.
_LATENT_RGB = {
    "sd": (
        ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)),
        (0.0, 0.0, 0.0),
    ),
    "sdxl": (
        ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)),
        (0.1084, -0.0175, -0.0011),
    ),
}


def preview_image(latents: torch.Tensor, arch: str) -> Image.Image:
    """A small RGB preview of the first latent of a batch, without running the VAE."""
    factors, bias = _LATENT_RGB["sdxl" if arch == "sdxl" else "sd"]
    lat = latents[0].detach().float().cpu()
    if lat.shape[0] != 4:
        lat = lat[:4] if lat.shape[0] > 4 else torch.nn.functional.pad(lat, (0, 0, 0, 0, 0, 4 - lat.shape[0]))
    rgb = torch.einsum("chw,cr->rhw", lat, torch.tensor(factors)) + torch.tensor(bias)[:, None, None]
    rgb = ((rgb + 1) * 127.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(rgb, "RGB")


def wide_dtype(device: torch.device) -> torch.dtype:
    """The precision a VAE that overflows in float16 decodes in: bfloat16 where the GPU computes it natively
    (float32's range, so no overflow, at half the memory traffic and on tensor cores), else float32."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def decode_latents(vae: torch.nn.Module, latents: torch.Tensor, image_processor: Any) -> list[Image.Image]:
    """Decode latents one image at a time, in a wider precision where half precision would overflow.

    The SDXL VAE produces infinities in float16 (black or NaN images). Its
    config asks for upcasting (``force_upcast``): it decodes in ``wide_dtype``.
    A VAE that claims to be safe but still overflows decodes again in float32.
    """
    cfg = vae.config
    images = []
    wanted = vae.dtype
    if vae.dtype == torch.float16 and getattr(cfg, "force_upcast", False):
        wanted = wide_dtype(latents.device)
    with _vae_in(vae, wanted):
        for lat in latents.split(1):
            lat = lat / cfg.scaling_factor
            if getattr(cfg, "shift_factor", None):
                lat = lat + cfg.shift_factor
            out = _decode(vae, lat)
            if not torch.isfinite(out).all() and wanted != torch.float32:
                with _vae_in(vae, torch.float32):
                    out = _decode(vae, lat)
            if not torch.isfinite(out).all():
                raise FloatingPointError("the image decoder produced invalid values (NaN); try full precision "
                                         "(--dtype fp32)")
            images.extend(image_processor.postprocess(out.float(), output_type="pil"))
    return images


@contextlib.contextmanager
def _vae_in(vae: torch.nn.Module, dtype: torch.dtype):
    """The VAE's weights in ``dtype`` for the block (once for all pictures), then as they were."""
    original = vae.dtype
    if dtype != original:
        vae.to(dtype)
    try:
        yield
    finally:
        if dtype != original:
            vae.to(original)


@torch.no_grad()
def _decode(vae: torch.nn.Module, lat: torch.Tensor) -> torch.Tensor:
    return vae.decode(lat.to(vae.dtype), return_dict=False)[0]


PNG_KEY = "storystudio"


def save_png(image: Image.Image, path: str | Path, parameters: dict[str, Any]) -> Path:
    """Write a PNG carrying its generation parameters as text chunks (atomically).

    ``storystudio`` holds the full parameters as JSON; ``parameters`` holds the
    one-paragraph summary many image tools already read.
    """
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_KEY, json.dumps(parameters, ensure_ascii=False, sort_keys=True))
    summary = (
        f"{parameters.get('prompt', '')}\nNegative prompt: {parameters.get('negative_prompt', '')}\n"
        f"Steps: {parameters.get('steps')}, Sampler: {parameters.get('scheduler')}, "
        f"CFG scale: {parameters.get('guidance')}, Seed: {parameters.get('seed')}, "
        f"Size: {parameters.get('width')}x{parameters.get('height')}, Model: {parameters.get('model')}"
    )
    info.add_itxt("parameters", summary)
    tmp = path.with_name(path.name + ".part")
    try:
        image.save(tmp, format="PNG", pnginfo=info)
        tmp.replace(path)
    except BaseException:  # a full disk, or Ctrl+C while the picture is written: no .part is left behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_png_parameters(path: str | Path) -> dict[str, Any]:
    """The generation parameters stored by :func:`save_png` (empty if the PNG has none)."""
    with Image.open(path) as im:
        text = im.text.get(PNG_KEY) if hasattr(im, "text") else None
    return json.loads(text) if text else {}
