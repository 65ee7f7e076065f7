"""Regions and reference photos on one GPU: ms per UNet call and GPU memory of a shared panel.

Real-size SDXL UNet with random fp16 weights (cost does not depend on weight
values), 1024x1024, classifier-free guidance (two halves per picture), at
step 1 of the default schedule (consistent attention's kernels run whatever
the gate draws). Two characters' banks are written first, each by a write of
``--refs`` references, as the story does in flight. Rows, each the median of
``--repeat`` calls, each call synchronised (wall ms), for ``--panels`` pictures
per call:

- ``plain``: diffusers' attention, no consistent attention;
- ``one_character_read``: the panels read one character's bank;
- ``two_character_read``: the current read of a shared panel, both banks
  appended to every query (the reference code's way);
- ``regions_read``: the shared panel with regions, side by side: each half's
  queries read only their character's bank (one attention call per region),
  cross-attention with each region's own text;
- with ``--photo`` (default on): an IP-Adapter Plus face SDXL model
  (random weights, the ViT-H/14 image encoder's architecture) built and loaded
  through the same ``load_ip_adapter`` path as a real one;
  ``one_character_read_photo`` (the photo on the whole picture) and
  ``regions_read_photos`` (each character's photo in its region).

``regions_vs_one_character`` is the ratio the target is about (at most 1.15).
With ``--compile`` the UNet's blocks are compiled first, as the app's "Compile
the model" does (``engine.story.compile.compile_unet``); each row's first calls
(not timed) then include its compiles.
Peak GPU memory (``*_peak_gib``) is ``torch.cuda.max_memory_allocated`` over
each row. ``--tiny`` runs everything on the CPU with the tiny test model, to
check the script itself.

Run on a CUDA machine, from the repository root:
    python benchmarks/regions_h200.py --out benchmarks/results/regions_h200.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import torch

from storystudio.engine.attention.config import ConsistencyConfig
from storystudio.engine.attention.consistent import ConsistentAttention
from storystudio.engine.attention.regions import RegionalCrossAttention, RegionLayout
from storystudio.engine.models.random_weights import build_photo_adapter_parts, build_pipeline
from storystudio.engine.story.photos import FACE_ADAPTERS, PhotoAdapter
from storystudio.engine.story.regions import photo_for, region_photos

GIB = 2**30
BOXES = [(0.0, 0.0, 0.55, 1.0), (0.45, 0.0, 1.0, 1.0)]  # two characters side by side, overlapping a little


def make_pipe(args):
    if args.tiny:
        return build_pipeline("sdxl", "tiny")
    pipe = build_pipeline("sdxl", "full", dtype=torch.float16, device="cuda")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def inputs(pipe, batch: int, size: int, seed: int = 0):
    dev, dt = pipe.unet.device, pipe.unet.dtype
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(batch, 4, size // 8, size // 8, generator=g).to(dev, dt)
    text = torch.randn(batch, 77, pipe.unet.config.cross_attention_dim, generator=g).to(dev, dt)
    pooled = pipe.text_encoder_2.config.projection_dim
    added = {"text_embeds": torch.randn(batch, pooled, generator=g).to(dev, dt),
             "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, device=dev, dtype=dt)}
    return lat, text, added


@torch.no_grad()
def timed(call, repeat: int, cuda: bool, warmup: int = 3) -> tuple[float, float]:
    """(median wall ms per call, each synchronised; peak GiB allocated during the row)."""
    for _ in range(warmup):
        call()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    peak = torch.cuda.max_memory_allocated() / GIB if cuda else 0.0
    return round(statistics.median(times), 2), round(peak, 3)


def photo_adapter(pipe, args) -> PhotoAdapter:
    """IP-Adapter Plus face SDXL with random weights (ViT-H/14 encoder), loaded by diffusers' load_ip_adapter."""
    size = "tiny" if args.tiny else "full"
    encoder, state = build_photo_adapter_parts(pipe.unet, "sdxl", size)
    pipe.register_modules(image_encoder=encoder.to(pipe.unet.device, pipe.unet.dtype))
    return PhotoAdapter.from_pipe(pipe, state, FACE_ADAPTERS["sdxl"][1], None)


def a_photo(seed: int) -> bytes:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(256, 256, 3, generator=g) * 255).to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@torch.no_grad()
def measure(args) -> dict:
    pipe = make_pipe(args)
    unet, cuda = pipe.unet, not args.tiny
    if args.compile:
        from storystudio.engine.story.compile import compile_unet

        compile_unet(unet, backend="eager" if args.tiny else "inductor")
    dev, dt = unet.device, unet.dtype
    n, size = args.panels, args.size
    t = torch.tensor(500, device=dev)
    lat, text, added = inputs(pipe, 2 * n, size)
    lat_w, text_w, added_w = inputs(pipe, 2 * args.refs, size, seed=1)
    out: dict = {}

    def unet_call(lat=lat, text=text, added=added):
        return lambda: unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)

    def row(name, call):
        out[f"{name}_ms"], out[f"{name}_peak_gib"] = timed(call, args.repeat, cuda)

    row("plain", unet_call())
    adapter = photo_adapter(pipe, args) if args.photo else None
    cross = RegionalCrossAttention(unet, adapter.layers if adapter else None)
    with ConsistentAttention(unet, ConsistencyConfig()) as csa, cross:
        csa.start(2, dev, dt)
        csa.begin_step(1)
        latent_hw = (size // 8, size // 8)
        banks = []
        for who, name in enumerate(("Ann", "Bo")):
            with csa.write(name, args.refs, who, latent_hw, dev) as bank:
                unet(lat_w, t, encoder_hidden_states=text_w, added_cond_kwargs=added_w, return_dict=False)
            banks.append(bank)
        scales = {i.scale for i in csa.layers.values()} | cross.levels_needed
        layout = RegionLayout([BOXES] * n, latent_hw, scales, 2, dev)
        texts = inputs(pipe, 2 * n * 2, size, seed=2)[1]  # each picture's two regions' texts

        def read(chosen, regions=None, photos=None, photo=None):
            kept: dict = {}  # as in a story: the texts' and photos' keys and values are kept for the whole run

            def call():
                with csa.read(chosen, n, halves=2, regions=regions):
                    if regions is not None or photo is not None:
                        with cross.call(regions, texts if regions is not None else None, photos, photo, kept):
                            unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)
                    else:
                        unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)
            return call

        row("one_character_read", read(banks[:1]))
        row("two_character_read", read(banks))
        row("regions_read", read(banks, layout))
        if adapter is not None:
            tokens = {name: (adapter.tokens(a_photo(s), name), 0.6) for s, name in enumerate(("Ann", "Bo"))}
            row("one_character_read_photo", read(banks[:1], photo=photo_for(*tokens["Ann"], n, True, dev, dt)))
            row("regions_read_photos", read(banks, layout, region_photos(["Ann", "Bo"], tokens, n, True, dev, dt)))
            out["regions_photos_vs_one_character_photo"] = round(
                out["regions_read_photos_ms"] / out["one_character_read_photo_ms"], 3)
    out["regions_vs_one_character"] = round(out["regions_read_ms"] / out["one_character_read_ms"], 3)
    out["regions_vs_two_character_read"] = round(out["regions_read_ms"] / out["two_character_read_ms"], 3)
    out["one_character_vs_plain"] = round(out["one_character_read_ms"] / out["plain_ms"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--refs", type=int, default=4, help="reference images per character (the write's batch)")
    ap.add_argument("--panels", type=int, default=1, help="shared panels per UNet call (2 pictures each with CFG)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-photo", dest="photo", action="store_false", help="leave out the IP-Adapter rows")
    ap.add_argument("--compile", action="store_true", help="compile the UNet's blocks first (as --compile does)")
    ap.add_argument("--tiny", action="store_true", help="check the script on the CPU with the tiny model")
    ap.add_argument("--out", default=None, help="JSON file to write the results to")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.repeat = 64, 2
    out = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.tiny else "cpu",
           "torch": torch.__version__, "size": args.size, "refs": args.refs, "panels": args.panels,
           "repeat": args.repeat, "compiled": args.compile}
    started = time.perf_counter()
    out.update(measure(args))
    out["wall_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text, flush=True)


if __name__ == "__main__":
    main()
