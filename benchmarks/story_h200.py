"""A whole story against plain SDXL on one GPU: seconds, host memory and GPU memory, side by side.

Real-size SDXL with random fp16 weights (cost does not depend on weight
values), 1024x1024, 30 steps, DDIM, guidance 5, FreeU off unless a row says
otherwise. Every figure is measured in the same process as its plain
counterpart. Parts (``--parts``, each adds keys to one JSON object):

- ``main``: 24 plain images through diffusers' own ``StableDiffusionXLPipeline``
  at the batch the story uses; the story (1 character, 4 references + 20
  panels) at that batch; the same story with the settings a user gets
  without touching anything (automatic batch, FreeU on); two characters (4
  references each, 16 panels, 4 of them showing both); one panel's UNet step
  with consistent attention against diffusers' ``AttnProcessor2_0`` (wall,
  batch 2); the write's GPU kernels against plain attention on the same batch
  (profiler); regenerating one panel later, references in flight against a
  kept bank in host memory.
- ``compiled``: the story with the UNet's repeated blocks compiled (the
  one-time compile reported apart, ``compile_s``).
- ``warm``: a fresh process compiling again from the on-disk cache (run after
  ``compiled``, with the same ``STORYSTUDIO_COMPILE_CACHE``).
- ``offload``: a story with model CPU offload under
  ``torch.cuda.set_per_process_memory_fraction`` standing in for 12 GB and
  8 GB cards; it must finish.

Host memory is the process's resident set, sampled every 50 ms during each
row (pinned host memory counts). ``--tiny`` runs everything on the CPU with
the tiny test model, to check the script itself.

Run on a CUDA machine, from the repository root:
    python benchmarks/story_h200.py --parts main --out benchmarks/results/story_h200.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from storystudio.engine.attention.bank import BankCache
from storystudio.engine.attention.config import ConsistencyConfig
from storystudio.engine.attention.consistent import ConsistentAttention
from storystudio.engine.models.loading import LoadedModel, load_model
from storystudio.engine.models.random_weights import build_pipeline
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.project.story import Character, Panel, Story

GIB = 2**30


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Peak:
    """Peak resident host memory and GPU memory while the block runs, and its wall time."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.host = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def _watch(self):
        while not self._stop.wait(0.05):
            self.host = max(self.host, rss())

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()
        self.host = max(self.host, rss())
        self.gpu = torch.cuda.max_memory_allocated() if self.cuda else 0

    def row(self, prefix: str) -> dict:
        return {f"{prefix}_s": round(self.seconds, 2), f"{prefix}_host_rss_gib": round(self.host / GIB, 2),
                f"{prefix}_gpu_peak_gib": round(self.gpu / GIB, 2)}


def one_character(n_refs: int = 4, n_panels: int = 20) -> Story:
    ann = Character("Ann", "a young woman with short red hair, green raincoat, freckles")
    places = ["on a pier", "in a library", "under a street lamp", "at a market", "on a roof", "in the rain",
              "by a window", "in a forest", "at the station", "in a cafe", "on a bridge", "at the beach"]
    panels = [Panel(f"p{i}", f"[Ann] {places[i % len(places)]}, scene {i}", characters=["Ann"])
              for i in range(n_refs + n_panels)]
    return Story([ann], panels, title="one character")


def two_characters() -> Story:
    cast = [Character("Ann", "a young woman with short red hair, green raincoat"),
            Character("Bo", "an old man with a white beard, navy peacoat")]
    panels = []
    for i in range(4 + 6):
        panels.append(Panel(f"a{i}", f"[Ann] walks, scene {i}", characters=["Ann"]))
    for i in range(4 + 6):
        panels.append(Panel(f"b{i}", f"[Bo] reads, scene {i}", characters=["Bo"]))
    for i in range(4):
        panels.append(Panel(f"ab{i}", f"[Ann] and [Bo] talk, scene {i}", characters=["Ann", "Bo"]))
    return Story(cast, panels, title="two characters")


def settings(args, **kw) -> GenerationSettings:
    base = dict(steps=args.steps, width=args.size, height=args.size, guidance=5.0, scheduler="ddim", freeu=False,
                id_length=4, batch_size=args.batch)
    base.update(kw)
    return GenerationSettings(**base)


def make_model(args) -> LoadedModel:
    if args.tiny:
        folder = Path(tempfile.mkdtemp()) / "tiny"
        from storystudio.engine.models.random_weights import create_tiny_model

        create_tiny_model(folder, "sdxl")
        return load_model(str(folder), device="cpu")
    pipe = build_pipeline("sdxl", "full", dtype=torch.float16, device="cuda")
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(pipe=pipe, arch="sdxl", source="random-sdxl", device=torch.device("cuda"),
                       dtype=torch.float16)


def plain_diffusers(model: LoadedModel, args, prompts: list[str], batch: int) -> dict:
    """diffusers' own pipeline: the same prompts, steps, sampler, guidance and size, ``batch`` images a call."""
    from diffusers import DDIMScheduler

    pipe = model.pipe
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.disable_freeu()
    cuda = model.device.type == "cuda"
    with Peak(cuda) as peak:
        for i in range(0, len(prompts), batch):
            chunk = prompts[i : i + batch]
            pipe(prompt=chunk, negative_prompt=[""] * len(chunk), num_inference_steps=args.steps,
                 guidance_scale=5.0, height=args.size, width=args.size, output_type="pil")
    return peak.row("plain")


def story_row(engine: StoryPipeline, story: Story, s: GenerationSettings, prefix: str, cuda: bool, **kw) -> dict:
    with Peak(cuda) as peak:
        result = engine.render(story, s, previews=False, **kw)
    row = peak.row(prefix)
    row[f"{prefix}_pictures"] = len(result.images) + len(result.sheets)
    calls = {k: round(1000 * statistics.median(v), 2) for k, v in result.unet_calls.items() if v}
    row[f"{prefix}_ms_per_unet_call"] = calls
    return row


def unet_inputs(pipe, batch: int, size: int):
    dev, dt = pipe.device, pipe.unet.dtype
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(batch, 4, size // 8, size // 8, generator=g).to(dev, dt)
    text = torch.randn(batch, 77, pipe.unet.config.cross_attention_dim, generator=g).to(dev, dt)
    pooled = pipe.text_encoder_2.config.projection_dim
    added = {"text_embeds": torch.randn(batch, pooled, generator=g).to(dev, dt),
             "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, device=dev, dtype=dt)}
    return lat, text, added


@torch.no_grad()
def per_call(model, call, repeat: int, warmup: int = 3) -> float:
    """Wall ms per call, calls back to back as a step loop makes them."""
    cuda = model.device.type == "cuda"
    for _ in range(warmup):
        call()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    if cuda:
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeat


@torch.no_grad()
def kernel_ms(model, call) -> float:
    """CUDA kernel time of one call, summed by the profiler (mean of two calls)."""
    from torch.profiler import ProfilerActivity, profile

    call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        call()
        torch.cuda.synchronize()
    total = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA")
    return total / 1000 / 2


@torch.no_grad()
def unet_steps(model: LoadedModel, args) -> dict:
    """One panel's read step against plain attention (batch 2), and the write's kernels against plain (batch 8)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe, size, cuda = model.pipe, args.size, model.device.type == "cuda"
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    t = torch.tensor(500, device=model.device)
    lat2, text2, added2 = unet_inputs(pipe, 2, size)
    lat8, text8, added8 = unet_inputs(pipe, 8, size)

    def run(lat, text, added):
        return lambda: pipe.unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)

    out = {"plain_step_ms": round(per_call(model, run(lat2, text2, added2), args.repeat), 2)}
    if cuda:
        out["plain_batch8_kernel_ms"] = round(kernel_ms(model, run(lat8, text8, added8)), 2)
    with ConsistentAttention(pipe.unet, ConsistencyConfig()) as csa:
        csa.start(2, model.device, pipe.unet.dtype)
        csa.begin_step(1)  # a step where the schedule is on (0.7): the kernels run whatever the draw
        latent_hw = (size // 8, size // 8)

        def write():
            with csa.write("Ann", 4, 1, latent_hw, model.device) as bank:
                pipe.unet(lat8, t, encoder_hidden_states=text8, added_cond_kwargs=added8, return_dict=False)
            return bank

        bank = write()
        if cuda:
            out["write_kernel_ms"] = round(kernel_ms(model, write), 2)
            out["write_vs_plain_kernels"] = round(out["write_kernel_ms"] / out["plain_batch8_kernel_ms"], 3)
        with csa.read([bank], 1, halves=2):
            out["read_step_ms"] = round(per_call(model, run(lat2, text2, added2), args.repeat), 2)
            if cuda:
                out["read_kernel_ms"] = round(kernel_ms(model, run(lat2, text2, added2)), 2)
    if cuda:
        out["plain_batch2_kernel_ms"] = round(kernel_ms(model, run(lat2, text2, added2)), 2)
    out["read_vs_plain_step"] = round(out["read_step_ms"] / out["plain_step_ms"], 3)
    return out


def regenerate(engine: StoryPipeline, story: Story, s: GenerationSettings, cuda: bool) -> dict:
    """One panel drawn later: its references drawn again beside it, against a kept bank in host memory."""
    one = [story.panels[-1].key]
    with Peak(cuda) as in_flight:
        engine.render(story, s, only=one, previews=False)
    cache = BankCache(ram_bytes=64 * GIB)
    engine.render(story, s, only=one, previews=False, bank_cache=cache)  # fills the cache
    with Peak(cuda) as kept:
        engine.render(story, s, only=one, previews=False, bank_cache=cache)
    return {"regenerate_in_flight_s": round(in_flight.seconds, 2), "regenerate_kept_bank_s": round(kept.seconds, 2),
            "regenerate_kept_bank_gib": round(cache.usage[0] / GIB, 2),
            "regenerate_kept_bank_host_rss_gib": round(kept.host / GIB, 2)}


def part_main(args, out: dict) -> None:
    model = make_model(args)
    cuda = model.device.type == "cuda"
    engine = StoryPipeline(model)
    story = one_character(args.refs, args.panels)
    s = settings(args)
    batch = s.batch_size or engine.auto_batch((args.size, args.size), True)
    s.batch_size = batch
    out["batch"] = batch
    prompts = [story.expand(p) for p in story.panels]
    out.update(plain_diffusers(model, args, prompts, batch))
    out.update(story_row(engine, story, s, "story", cuda))
    out["story_vs_plain"] = round(out["story_s"] / out["plain_s"], 3)
    default = GenerationSettings(steps=args.steps, width=args.size, height=args.size)
    out["default_settings"] = default.to_dict()
    out.update({k.replace("story", "default_story", 1): v
                for k, v in story_row(engine, story, default, "story", cuda).items()})
    two = story_row(engine, two_characters(), s, "two_characters", cuda)
    out.update(two)
    out.update(regenerate(engine, story, s, cuda))
    out.update(unet_steps(model, args))


def part_compiled(args, out: dict, prefix: str) -> None:
    from storystudio.engine.story.compile import compile_unet

    model = make_model(args)
    cuda = model.device.type == "cuda"
    engine = StoryPipeline(model)
    story = one_character(args.refs, args.panels)
    s = settings(args)
    s.batch_size = s.batch_size or engine.auto_batch((args.size, args.size), True)
    if prefix == "":  # plain SDXL in the same process, side by side with the compiled story
        plain = plain_diffusers(model, args, [story.expand(p) for p in story.panels], s.batch_size)
        out.update({f"compiled_run_{k}": v for k, v in plain.items()})
    compile_unet(model.pipe.unet, backend="eager" if args.tiny else "inductor")
    first = story_row(engine, story, s, "first", cuda)
    second = story_row(engine, story, s, "compiled_story", cuda)
    out[f"{prefix}first_run_s"] = first["first_s"]
    if prefix == "":
        out.update(second)
        out["compile_s"] = round(first["first_s"] - second["compiled_story_s"], 2)
        out["compiled_story_vs_plain"] = round(second["compiled_story_s"] / out["compiled_run_plain_s"], 3)
    else:
        out[f"{prefix}compile_s"] = round(first["first_s"] - second["compiled_story_s"], 2)
        out[f"{prefix}story_s"] = second["compiled_story_s"]


def part_offload(args, out: dict) -> None:
    """Model CPU offload under a memory cap: 12 GB and 8 GB cards."""
    if args.tiny:
        return
    story = one_character(2, 2)
    total = torch.cuda.get_device_properties(0).total_memory
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_pipeline("sdxl", "full", dtype=torch.float16, device="cuda")
        pipe.save_pretrained(tmp, safe_serialization=True)
        del pipe
        torch.cuda.empty_cache()
        for cap in (12, 8):
            torch.cuda.set_per_process_memory_fraction(cap * 1e9 / total)
            model = load_model(tmp, device="cuda", dtype="fp16", memory="model-offload")
            engine = StoryPipeline(model)
            s = GenerationSettings(steps=args.steps, width=args.size, height=args.size, id_length=2)
            try:
                row = story_row(engine, story, s, f"offload_{cap}gb", True)
                row[f"offload_{cap}gb_status"] = "finished"
                row[f"offload_{cap}gb_batch"] = engine.auto_batch((args.size, args.size), True)
            except torch.OutOfMemoryError as exc:
                row = {f"offload_{cap}gb_status": f"out of memory: {str(exc)[:200]}"}
            out.update(row)
            del model, engine
            torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", default=["main"], choices=["main", "compiled", "warm", "offload"])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--refs", type=int, default=4)
    ap.add_argument("--panels", type=int, default=20)
    ap.add_argument("--batch", type=int, default=0, help="pictures per call (0: the story's automatic choice)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--tiny", action="store_true", help="check the script on the CPU with the tiny model")
    ap.add_argument("--out", default=None, help="JSON file to add the results to")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.steps, args.repeat = 64, 3, 2
    out: dict = {}
    if args.out and Path(args.out).is_file():
        out = json.loads(Path(args.out).read_text())
    out.update({"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                "torch": torch.__version__, "size": args.size, "steps": args.steps, "refs": args.refs,
                "panels": args.panels})
    for part in args.parts:
        started = time.perf_counter()
        if part == "main":
            part_main(args, out)
        elif part == "compiled":
            part_compiled(args, out, "")
        elif part == "warm":
            part_compiled(args, out, "warm_")
        elif part == "offload":
            part_offload(args, out)
        out[f"part_{part}_wall_s"] = round(time.perf_counter() - started, 1)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out, indent=1), flush=True)


if __name__ == "__main__":
    main()
