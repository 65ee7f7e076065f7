"""The diffusion transition backend on real-size architectures (random fp16 weights): time and memory per clip.

Builds the real SD1.5 UNet / VAE / text encoder, an AnimateDiff v3 motion
adapter (v2 with ``--motion v2``), SparseCtrl-RGB, and an IP-Adapter SD1.5
with the OpenCLIP ViT-H/14 image encoder, with random weights (cost does not
depend on weight values; nothing can be downloaded), assembles them with the
same ``build_video_pipeline`` the loader uses, and makes one transition per
step count with ``DiffusionTransitionBackend.render``: 16 frames at 512x512,
then resampled to ``--out-frames`` frames of ``--out-size`` as the animatic
asks. Per clip: seconds for the whole clip, per denoising step (median, the
GPU synchronised at each step's end), for decoding the 16 frames, for
resampling, and the peak GPU memory.

Run on a CUDA machine:  python benchmarks/transition_sd15.py --steps 25 10
It prints one JSON object; docs/PERFORMANCE.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from PIL import Image

from storystudio.engine.models.loading import quiet_libraries
from storystudio.engine.models.random_weights import build_video_components
from storystudio.engine.video.transitions import TransitionRequest
from storystudio.engine.video.diffusion import DiffusionTransitionBackend, VideoModels, build_video_pipeline

GIB = 2**30


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def keyframe(seed: int, size=(768, 512)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def one_clip(backend: DiffusionTransitionBackend, steps: int, args) -> dict:
    marks: list[float] = []

    def progress(done: int, total: int) -> None:
        torch.cuda.synchronize()
        marks.append(time.perf_counter())

    request = TransitionRequest(keyframe(1), keyframe(2), frames=args.out_frames, size=tuple(args.out_size),
                                start_prompt="a lighthouse on a cliff at dusk", end_prompt="a boat in a storm",
                                seed=5, options=dict(steps=steps, native_frames=args.frames))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    frames = backend.render(request, progress=progress)
    torch.cuda.synchronize()
    end = time.perf_counter()
    assert len(frames) == args.out_frames and frames[0].size == tuple(args.out_size)
    step_times = [b - a for a, b in zip(marks[: steps - 1], marks[1:steps])]
    return {
        "steps": steps,
        "seconds_per_clip": round(end - start, 3),
        "seconds_before_first_step_end": round(marks[0] - start, 3),  # keyframe encoding, prompt, first step
        "ms_per_step_median": round(1000 * statistics.median(step_times), 1) if step_times else None,
        "seconds_denoising": round(marks[steps - 1] - start, 3),
        "seconds_decoding_16_frames": round(marks[-1] - marks[steps - 1], 3),
        "seconds_resampling": round(end - marks[-1], 3),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[25])
    ap.add_argument("--frames", type=int, default=16, help="frames the model makes")
    ap.add_argument("--out-frames", type=int, default=24, help="frames the animatic asks for")
    ap.add_argument("--out-size", type=int, nargs=2, default=[1280, 720])
    ap.add_argument("--motion", choices=["v2", "v3"], default="v3")
    ap.add_argument("--rounds", type=int, default=2, help="clips per step count (the median is reported)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("This benchmark needs a CUDA GPU.")
    quiet_libraries()
    t0 = time.perf_counter()
    parts = build_video_components("full", dtype=torch.float16, device="cuda", motion=args.motion)
    counts = {
        "unet_2d": params(parts["base"].unet), "vae": params(parts["base"].vae),
        "text_encoder": params(parts["base"].text_encoder), "motion_adapter": params(parts["motion_adapter"]),
        "sparsectrl": params(parts["controlnet"]), "image_encoder": params(parts["image_encoder"]),
        "ip_adapter": sum(v.numel() for d in parts["ip_adapter"].values() for v in d.values()),
    }
    pipe = build_video_pipeline(parts["base"], parts["motion_adapter"], parts["controlnet"], parts["image_encoder"],
                                parts["ip_adapter"], "cuda")
    del parts
    torch.cuda.empty_cache()
    models = VideoModels(pipe=pipe, sources={"random": "real-size architectures, random fp16 weights"},
                         device=torch.device("cuda"), dtype=torch.float16)
    backend = DiffusionTransitionBackend(models)
    built = time.perf_counter() - t0
    weights_gib = torch.cuda.memory_allocated() / GIB
    one_clip(backend, 2, args)  # warm-up: kernels chosen, allocator filled
    clips = {}
    for steps in args.steps:
        runs = [one_clip(backend, steps, args) for _ in range(args.rounds)]
        clips[f"{steps}_steps"] = {
            k: round(statistics.median(r[k] for r in runs), 3) if isinstance(runs[0][k], float) else runs[0][k]
            for k in runs[0]
        }
        clips[f"{steps}_steps"]["seconds_per_clip_all_rounds"] = [r["seconds_per_clip"] for r in runs]
    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
        "motion_adapter": args.motion,
        "native_frames": args.frames,
        "native_size": list(models.native_size),
        "out_frames": args.out_frames,
        "out_size": args.out_size,
        "guidance": 7.5,
        "params_millions": {k: round(v / 1e6, 1) for k, v in counts.items()},
        "motion_unet_params_millions": round(params(pipe.unet) / 1e6, 1),
        "seconds_to_build": round(built, 1),
        "weights_on_gpu_gib": round(weights_gib, 2),
        "clips": clips,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
