"""The GPU memory modes (full, model CPU offload, sequential offload) on a real-size SDXL (random fp16 weights).

For each mode the model is loaded from a saved diffusers folder through
``load_model(memory=...)``, exactly as the app and the CLI load it, and a
one-character story (``--refs`` references written together, then
``--panels`` panels read) is drawn with consistent attention. Printed per mode:
load and render seconds, peak GPU memory, and a check that every picture came
out (no NaN or blank). Offload does not change the pictures' cost in FLOPs;
it trades GPU memory for host-to-device copies.

Run on a CUDA machine:  python benchmarks/memory_modes.py --size 768 --steps 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from storystudio.engine.models.base import MEMORY_MODES
from storystudio.engine.models.loading import load_model
from storystudio.engine.models.random_weights import build_pipeline
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.project.story import Character, Panel, Story

GIB = 2**30


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--refs", type=int, default=2)
    ap.add_argument("--panels", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=list(MEMORY_MODES))
    args = ap.parse_args()
    character = Character("Ann", "a girl with red hair")
    panels = [Panel(f"p{i}", f"[Ann] scene {i}", characters=["Ann"]) for i in range(args.refs + args.panels)]
    story = Story([character], panels, title="bench")
    settings = GenerationSettings(steps=args.steps, width=args.size, height=args.size, id_length=args.refs)
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "size": args.size,
               "steps": args.steps, "refs": args.refs, "panels": args.panels, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        pipe = build_pipeline("sdxl", "full", dtype=torch.float16)
        pipe.save_pretrained(tmp, safe_serialization=True)
        del pipe
        for mode in args.modes:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            model = load_model(tmp, device="cuda", dtype="fp16", memory=mode)
            loaded = time.perf_counter() - start
            after_load = torch.cuda.memory_allocated() / GIB
            start = time.perf_counter()
            result = StoryPipeline(model).render(story, settings)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            pictures = [np.asarray(img.image, dtype=np.float32) for img in result.images.values()]
            ok = len(pictures) == len(panels) and all(np.isfinite(p).all() and p.std() > 0 for p in pictures)
            results["modes"][mode] = {"load_s": round(loaded, 2), "render_s": round(seconds, 2),
                                      "gpu_after_load_gib": round(after_load, 2),
                                      "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
                                      "pictures_ok": bool(ok)}
            del model, result
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
