"""Consistent self-attention on a real-size SDXL UNet (random fp16 weights): speed, memory, bank size.

Cost does not depend on weight values, so random weights measure what a real
SDXL checkpoint costs. Two parts:

1. UNet calls alone, median of ``--repeat`` calls: plain attention for 1 image
   and for ``--refs`` images, the write phase of ``--refs`` references, the
   read phase of one panel. Consistent attention is forced on in every layer
   and step here (the worst case; the default schedule skips 30% / 10%).
2. The story pipeline end to end (text encoders, UNet, VAE) on a one-character
   story: ``--refs`` references written together, then ``--panels`` panels
   read one at a time, with the default schedule.

Run on a CUDA machine:  python benchmarks/csa_sdxl.py --size 1024 --steps 8
It prints one JSON object; docs/PERFORMANCE.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from storystudio.engine.consistent_attention import ConsistencyConfig, ConsistentAttention
from storystudio.engine.models import LoadedModel
from storystudio.engine.random_models import build_pipeline
from storystudio.engine.story_pipeline import GenerationSettings, StoryPipeline
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
    lat, text, added = unet_inputs(pipe, batch, size)
    t = torch.tensor(500, device=pipe.device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        pipe.unet(lat, t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)
        end.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
    return {"ms": round(statistics.median(times), 2), "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2)}


def unet_part(pipe, args) -> dict:
    out = {}
    time_calls(pipe, 2 * args.refs, args.size, repeat=1, warmup=10)  # clocks up, kernels chosen
    out["plain_1_image_batch_2"] = time_calls(pipe, 2, args.size, args.repeat)
    out[f"plain_{args.refs}_images_batch_{2 * args.refs}"] = time_calls(pipe, 2 * args.refs, args.size, args.repeat)
    always = ConsistencyConfig(schedule=((0, 1.0),))
    calls = 3 + args.repeat
    with ConsistentAttention(pipe.unet, always, seed=0) as csa:
        with csa.write("hero", args.refs, sample_seed=1, steps=calls) as written:
            out[f"write_{args.refs}_refs"] = time_calls(pipe, 2 * args.refs, args.size, args.repeat)
        bank = written["bank"]
        out["bank_mib_per_step"] = round(bank.bytes_per_step / 2**20, 1)
        out["bank_location"] = str(bank.device) + (" (pinned)" if bank.data.is_pinned() else "")
        assert bank.num_steps == calls
        with csa.read([bank], 1, pipe.device):
            out["read_1_panel"] = time_calls(pipe, 2, args.size, args.repeat)
        with csa.write("hero", args.refs, sample_seed=1, keep_on="device", steps=calls) as written:
            out[f"write_{args.refs}_refs_bank_on_gpu"] = time_calls(pipe, 2 * args.refs, args.size, args.repeat)
        dev_bank = written["bank"]
        with csa.read([dev_bank], 1, pipe.device):
            out["read_1_panel_bank_on_gpu"] = time_calls(pipe, 2, args.size, args.repeat)
        del dev_bank
    # Plain attention once more at the end, to show how much the clock drifted meanwhile.
    out["plain_1_image_batch_2_again"] = time_calls(pipe, 2, args.size, args.repeat)
    steps_50 = bank.bytes_per_step * 50 / GIB
    out["bank_gib_for_50_steps"] = round(steps_50, 2)
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
