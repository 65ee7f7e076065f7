"""Consistent self-attention on a real-size SDXL UNet (random fp16 weights): speed, memory, bank size.

Cost does not depend on weight values, so random weights measure what a real
SDXL checkpoint costs. Two parts:

1. UNet calls alone, median of ``--repeat`` calls: plain attention for
   ``--refs`` images, the write phase of ``--refs`` references, plain attention
   for 1 image, the read phase of one panel; once with the bank in pinned host
   memory (the default) and once on the GPU. Consistent attention is forced on
   in every layer and step here (the worst case; the default schedule skips
   30% / 10%). Each row gives the GPU time between CUDA events, the CPU time
   to launch the call, and the CUDA kernel time summed by the profiler: where
   launch time is about the GPU time, the call is bound by Python and kernel
   launches, not by the GPU.
2. The story pipeline end to end (text encoders, UNet, VAE) on a one-character
   story: ``--refs`` references written together, then ``--panels`` panels
   read one at a time, with the default schedule.

Run on a CUDA machine:  python benchmarks/csa_sdxl.py --size 1024 --steps 8 --rounds 3
It prints one JSON object; docs/PERFORMANCE.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from storystudio.engine.attention.consistent import ConsistencyConfig, ConsistentAttention
from storystudio.engine.models.loading import LoadedModel
from storystudio.engine.models.random_weights import build_pipeline
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.project.story import Character, Panel, Story

GIB = 2**30


def unet_inputs(pipe, batch: int, size: int):
    dev, dt = pipe.device, pipe.unet.dtype
    lat = torch.randn(batch, 4, size // 8, size // 8, device=dev, dtype=dt)
    text = torch.randn(batch, 77, 2048, device=dev, dtype=dt)
    added = {
        "text_embeds": torch.randn(batch, 1280, device=dev, dtype=dt),
        "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, device=dev, dtype=dt),
    }
    return lat, text, added


@torch.no_grad()
def time_calls(pipe, batch: int, size: int, repeat: int, warmup: int = 3) -> dict:
    """Median over ``repeat`` UNet calls of: GPU time between events (ms), CPU time to launch
    the call (ms), and the sum of CUDA kernel time measured by the profiler over two calls."""
    from torch.profiler import ProfilerActivity, profile

    lat, text, added = unet_inputs(pipe, batch, size)
    t = torch.tensor(500, device=pipe.device)

    def call():
        pipe.unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, launch = [], []
    for i in range(warmup + repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        w0 = time.perf_counter()
        start.record()
        call()
        end.record()
        launched = time.perf_counter() - w0
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
            launch.append(1000 * launched)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        call()
        torch.cuda.synchronize()
    kernel_us = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA"
                    and "Memcpy" not in e.key)
    return {
        "ms": round(statistics.median(times), 2),
        "cpu_launch_ms": round(statistics.median(launch), 2),
        "gpu_kernel_ms": round(kernel_us / 2000, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
    }


def unet_part(pipe, args) -> dict:
    """Every configuration measured in ``--rounds`` interleaved rounds; the median of the rounds is kept,
    so that a drift of the CPU's speed during the run does not favour one configuration."""
    rounds: dict[str, list[dict]] = {}
    time_calls(pipe, 2 * args.refs, args.size, repeat=1, warmup=10)  # clocks up, kernels chosen
    always = ConsistencyConfig(schedule=((0, 1.0),))
    calls = 3 + args.repeat + 2
    n8 = 2 * args.refs
    extra: dict = {}
    with ConsistentAttention(pipe.unet, always, seed=0) as csa:
        for _ in range(args.rounds):
            for keep in ("host", "device"):
                tag = "" if keep == "host" else "_bank_on_gpu"
                with csa.plain(args.refs):
                    rounds.setdefault(f"plain_{args.refs}_images_batch_{n8}{tag}", []).append(
                        time_calls(pipe, n8, args.size, args.repeat))
                with csa.write("hero", args.refs, sample_seed=1, steps=calls, keep_on=keep) as written:
                    rounds.setdefault(f"write_{args.refs}_refs{tag}", []).append(
                        time_calls(pipe, n8, args.size, args.repeat))
                bank = written["bank"]
                assert bank.num_steps == calls
                if keep == "host":
                    extra["bank_mib_per_step"] = round(bank.bytes_per_step / 2**20, 1)
                    extra["bank_gib_for_50_steps"] = round(bank.bytes_per_step * 50 / GIB, 2)
                    extra["bank_location"] = str(bank.device) + (" (pinned)" if bank.data.is_pinned() else "")
                with csa.plain(1):
                    rounds.setdefault(f"plain_1_image_batch_2{tag}", []).append(
                        time_calls(pipe, 2, args.size, args.repeat))
                with csa.read([bank], 1, pipe.device):
                    rounds.setdefault(f"read_1_panel{tag}", []).append(time_calls(pipe, 2, args.size, args.repeat))
                del bank, written
                torch.cuda.empty_cache()
    out = {name: {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} for name, rs in rounds.items()}
    out.update(extra)
    return out


def story_part(pipe, args) -> dict:
    model = LoadedModel(pipe, "sdxl", "random SDXL (fp16)", pipe.device, torch.float16)
    panels = [Panel(f"p{i}", f"[Hero] scene number {i}", characters=["Hero"]) for i in range(args.refs + args.panels)]
    story = Story([Character("Hero", "a knight in red armour")], panels)
    settings = GenerationSettings(steps=args.steps, width=args.size, height=args.size, id_length=args.refs, seed=3)
    engine = StoryPipeline(model)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = engine.render(story, settings)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    per_phase = {k: round(1000 * statistics.median(v[1:] or v), 2) for k, v in result.unet_calls.items() if v}
    return {
        "panels": len(result.images),
        "steps": args.steps,
        "seconds_total": round(seconds, 2),
        "ms_per_unet_call_median": per_phase,
        "bank_mib_per_step": round(result.banks["Hero"].bytes_per_step / 2**20, 1),
        "bank_gib_total_host": round(result.bank_bytes / GIB, 3),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--refs", type=int, default=4)
    ap.add_argument("--panels", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("This benchmark needs a CUDA GPU.")
    pipe = build_pipeline("sdxl", "full", dtype=torch.float16, device="cuda")
    pipe.set_progress_bar_config(disable=True)
    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "size": args.size,
        "refs": args.refs,
        "unet": unet_part(pipe, args),
        "story": story_part(pipe, args),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
