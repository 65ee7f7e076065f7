"""A 48-panel story through the Ray back end on 1 GPU and on N GPUs of one machine, in the same run.

Real-size SDXL with random fp16 weights (cost does not depend on weight
values; built as benchmarks/story_h200.py builds it, then written once as a
diffusers folder so that every actor loads it with ``load_model``, the path
of a real model), 1024x1024, 30 steps, DDIM, guidance 5, FreeU off. The story
has two characters (4 references each): 22 panels of Ann alone, 18 of Bo
alone, 8 of both, 48 in all.

For each actor count (``--actors``, default 1 and every GPU) the script
starts the actors, draws the story once to warm up (kernels, allocator) and
then times a second render, and reports:

- ``wall_s``: the render's wall time on the driver (pictures back in the
  driver's memory included);
- ``scaling_efficiency``: ``wall(1) / (N * wall(N))`` (1.0 is perfect);
- ``peak_allocated_gib`` / ``peak_reserved_gib`` per actor (each holds one GPU);
- ``pictures_per_actor``: the step loop's pictures on each actor, references
  included, from the plan (``ray_story.load``).

``--tiny`` runs the same on the CPU with the tiny test model (2 actors of one
core, 16 panels at 64x64, 3 steps), to check the script itself.

Run on a machine with several CUDA GPUs, from the repository root:
    python benchmarks/ray_story.py --out benchmarks/results/ray_story_h200.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from storystudio.engine.distributed.ray_story import RayStoryEngine, assign, load
from storystudio.engine.story.pipeline import GenerationSettings
from storystudio.project.story import Character, Panel, Story

GIB = 2**30


def story(panels: int) -> Story:
    """Two characters; of ``panels`` panels, 46 % Ann alone, 37 % Bo alone, the rest both (22/18/8 of 48)."""
    cast = [Character("Ann", "a young woman with short red hair, green raincoat, freckles"),
            Character("Bo", "an old man with a white beard, navy peacoat")]
    places = ["on a pier", "in a library", "under a street lamp", "at a market", "on a roof", "in the rain",
              "by a window", "in a forest", "at the station", "in a cafe", "on a bridge", "at the beach"]
    ann = round(panels * 22 / 48)
    bo = round(panels * 18 / 48)
    out = []
    for i in range(panels):
        where = places[i % len(places)]
        if i < ann:
            out.append(Panel(f"a{i}", f"[Ann] {where}, scene {i}", characters=["Ann"]))
        elif i < ann + bo:
            out.append(Panel(f"b{i}", f"[Bo] {where}, scene {i}", characters=["Bo"]))
        else:
            out.append(Panel(f"ab{i}", f"[Ann] and [Bo] talk {where}, scene {i}", characters=["Ann", "Bo"]))
    return Story(cast, out, title=f"{panels} panels, two characters")


def model_folder(args) -> Path:
    """A diffusers folder the actors load: the tiny test model, or real-size SDXL with random fp16 weights."""
    folder = Path(args.model_dir or tempfile.mkdtemp(prefix="ray-story-model-")) / ("tiny" if args.tiny else "sdxl")
    if folder.exists() and any(folder.iterdir()):
        return folder  # written by an earlier run (--model-dir)
    if args.tiny:
        from storystudio.engine.models.random_weights import create_tiny_model

        return create_tiny_model(folder, "sdxl")
    import torch

    from storystudio.engine.models.random_weights import build_pipeline

    pipe = build_pipeline("sdxl", "full", dtype=torch.float16, device="cpu")
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def run(args, actors: int, source: Path, s: Story, settings: GenerationSettings) -> dict:
    import ray

    cpus = 1 if args.tiny else None
    engine = RayStoryEngine.start("auto", str(source), device="cpu" if args.tiny else "auto", actors=actors,
                                  cpus_per_actor=cpus)
    try:
        engine.render(s, settings, previews=False)  # warm-up: kernels, allocator, the story's shapes
        ray.get([a.peak_memory.remote(reset=True) for a in engine.actors])
        started = time.perf_counter()
        result = engine.render(s, settings, previews=False)
        wall = time.perf_counter() - started
        peaks = ray.get([a.peak_memory.remote() for a in engine.actors])
        plan = engine.plan(s, settings)
        shares = assign(list(plan.units), plan.references, list(range(actors)))
        return {
            "actors": actors,
            "device": engine.device_words,
            "wall_s": round(wall, 2),
            "pictures": len(result.images),
            "batches": {f"{w}x{h}": n for (w, h), n in plan.batches.items()},
            "pictures_per_actor": [load(shares.get(a, []), plan.references) for a in range(actors)],
            "peak_allocated_gib": [round(p["allocated"] / GIB, 2) for p in peaks],
            "peak_reserved_gib": [round(p["reserved"] / GIB, 2) for p in peaks],
            "unet_ms_per_call": {phase: round(1000 * sum(v) / len(v), 1) for phase, v in result.unet_calls.items()
                                 if v},
        }
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", default=None, help="actor counts to compare, e.g. 1,2,4 (default 1 and every GPU)")
    parser.add_argument("--panels", type=int, default=None, help="story panels (default 48; 16 with --tiny)")
    parser.add_argument("--size", type=int, default=None, help="picture side (default 1024; 64 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="steps (default 30; 3 with --tiny)")
    parser.add_argument("--batch", type=int, default=0, help="pictures per UNet call (0: as the GPUs' memory allows)")
    parser.add_argument("--model-dir", default=None, help="folder to write the random model in (kept for reruns)")
    parser.add_argument("--tiny", action="store_true", help="check the script on the CPU with the tiny model")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    panels = args.panels or (16 if args.tiny else 48)
    size = args.size or (64 if args.tiny else 1024)
    steps = args.steps or (3 if args.tiny else 30)

    import logging

    import ray

    ray.init(num_cpus=2 if args.tiny else None, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if not args.tiny and gpus < 1:
        raise SystemExit("no GPU here: run with --tiny to check the script on the CPU")
    counts = [int(c) for c in args.actors.split(",")] if args.actors else sorted({1, 2 if args.tiny else gpus})
    source = model_folder(args)
    s = story(panels)
    settings = GenerationSettings(steps=steps, width=size, height=size, guidance=5.0, scheduler="ddim", freeu=False,
                                  id_length=4, batch_size=args.batch, seed=1)
    rows = []
    for n in counts:
        row = run(args, n, source, s, settings)
        rows.append(row)
        print(json.dumps(row), flush=True)
    one = next((r for r in rows if r["actors"] == 1), None)
    for r in rows:
        if one is not None:
            r["speedup"] = round(one["wall_s"] / r["wall_s"], 3)
            r["scaling_efficiency"] = round(one["wall_s"] / (r["actors"] * r["wall_s"]), 3)
    out = {"story": {"panels": panels, "characters": 2, "references_each": 4, "size": size, "steps": steps,
                     "scheduler": "ddim", "guidance": 5.0, "batch_size": args.batch},
           "model": "tiny sdxl (CPU)" if args.tiny else "SDXL, random fp16 weights",
           "gpus": gpus, "rows": rows}
    for r in rows:
        print(f"{r['actors']} actor(s): {r['wall_s']:.1f} s, speed-up {r.get('speedup', '-')}, efficiency "
              f"{r.get('scaling_efficiency', '-')}, pictures per actor {r['pictures_per_actor']}, peak GiB "
              f"{r['peak_allocated_gib']}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    ray.shutdown()


if __name__ == "__main__":
    main()
