"""What a pose costs: one SDXL UNet call with and without the OpenPose ControlNet, and a short story.

Real-size SDXL UNet and the SDXL ControlNet architecture of the catalog's OpenPose entry (a copy of the
UNet's encoder and middle block, as ``ControlNetModel.from_unet`` builds it), random fp16 weights (cost
does not depend on weight values), 1024x1024 (128x128 latents), 77 text tokens. Rows, each the median of
``--repeat`` calls after ``--warmup`` (CUDA events around the call), with the GPU's peak memory:

- ``plain_b2``: the UNet alone, batch 2 (one panel with classifier-free guidance);
- ``pose_b2``: the ControlNet's residuals (``StoryControls.residuals``, the story's own code) and the UNet
  call that adds them, batch 2, every row guided;
- ``plain_b8`` / ``pose_one_of_four_b8``: batch 8 (four pictures), one of them posed: the ControlNet runs on
  its 2 rows only and its residuals are scattered into the batch;
- ``pose_all_b8``: batch 8, all four posed;
- with ``--story``: a story (1 character, 2 references and 2 panels, 20 steps, DDIM) through
  ``StoryPipeline.render`` without and with a pose on one panel, seconds and GPU peak.

``--tiny`` runs the same on the CPU with the tiny test UNet at 64x64, to check the script.

Run on a CUDA machine, from the repository root:
    python benchmarks/controlnet_h200.py --story --out benchmarks/results/controlnet_h200.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from storystudio.engine.models.random_weights import build_controlnet, build_pipeline
from storystudio.engine.story.controls import StoryControls
from storystudio.project.pose import PRESETS, WHOLE_PANEL, Guide, Skeleton

GIB = 2**30


def timed(fn, device: torch.device, warmup: int, repeat: int) -> dict:
    """Median milliseconds of ``fn()`` and the GPU's peak memory while it runs."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t))
    row = {"ms": round(statistics.median(times), 2), "ms_min": round(min(times), 2)}
    if cuda:
        row["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
    return row


def unet_rows(tiny: bool, device: torch.device, dtype: torch.dtype, warmup: int, repeat: int) -> dict:
    pipe = build_pipeline("sdxl", "tiny" if tiny else "full", dtype=dtype, device=str(device))
    unet = pipe.unet.eval().requires_grad_(False)
    net = build_controlnet(unet, "tiny" if tiny else "full").to(device, dtype).eval().requires_grad_(False)
    side = 64 if tiny else 1024
    latent = side // pipe.vae_scale_factor
    controls = StoryControls({"pose": net}, {"pose": "random"}, strength=1.0)
    pose = Guide("pose", ((Skeleton(PRESETS["walking"]), WHOLE_PANEL),)).render((side, side))
    text = unet.config.cross_attention_dim
    pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    t = torch.tensor(500, device=device)
    out: dict = {"size": side, "controlnet_parameters": sum(p.numel() for p in net.parameters()),
                 "unet_parameters": sum(p.numel() for p in unet.parameters())}

    def inputs(batch: int):
        g = torch.Generator(device="cpu").manual_seed(batch)
        sample = torch.randn(batch, 4, latent, latent, generator=g).to(device, dtype)
        embeds = torch.randn(batch, 77, text, generator=g).to(device, dtype)
        added = {"text_embeds": torch.randn(batch, pooled, generator=g).to(device, dtype),
                 "time_ids": torch.tensor([[side, side, 0, 0, side, side]] * batch, device=device, dtype=dtype)}
        return sample, embeds, added

    def call(batch: int, posed: int | None):
        sample, embeds, added = inputs(batch)
        pictures = batch // 2
        guides = None
        if posed:
            guides = controls.prepare([{"pose": pose} if i < posed else {} for i in range(pictures)], 2, device, dtype)

        def run():
            # as the story's step loop runs (under no_grad): no autograd graph, no activations kept
            with torch.inference_mode():
                extra = {} if guides is None else controls.residuals(guides, 0, 1, sample, t, embeds, added)
                unet(sample, t, encoder_hidden_states=embeds, added_cond_kwargs=added, return_dict=False, **extra)

        return run

    for name, batch, posed in (("plain_b2", 2, None), ("pose_b2", 2, 1), ("plain_b8", 8, None),
                               ("pose_one_of_four_b8", 8, 1), ("pose_all_b8", 8, 4)):
        out[name] = timed(call(batch, posed), device, warmup, repeat)
        print(name, out[name], flush=True)
    for plain, posed in (("plain_b2", "pose_b2"), ("plain_b8", "pose_one_of_four_b8"), ("plain_b8", "pose_all_b8")):
        out[f"{posed}_vs_plain"] = round(out[posed]["ms"] / out[plain]["ms"], 3)
    del pipe, net
    return out


def story_rows(tiny: bool, device: torch.device, dtype: torch.dtype) -> dict:
    from storystudio.engine.models.loading import LoadedModel
    from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
    from storystudio.project.story import Character, Panel, Story

    pipe = build_pipeline("sdxl", "tiny" if tiny else "full", dtype=dtype, device=str(device))
    net = build_controlnet(pipe.unet, "tiny" if tiny else "full").to(device, dtype)
    model = LoadedModel(pipe, "sdxl", "random-sdxl", device, dtype)
    engine = StoryPipeline(model)
    engine._controlnets[("pose", "random")] = (net, "random-controlnet-sdxl")  # in memory: nothing to load
    side = 64 if tiny else 1024
    settings = GenerationSettings(steps=3 if tiny else 20, width=side, height=side, id_length=2, freeu=False,
                                  control_models={"pose": "random"})
    panels = [Panel(f"p{i}", f"[Ann] scene {i}", characters=["Ann"]) for i in range(4)]
    out = {}
    for name, guided in (("story_plain", False), ("story_one_pose", True)):
        if guided:
            panels[3].guides = (Guide("pose", ((Skeleton(PRESETS["arms up"]), WHOLE_PANEL),)),)
        story = Story([Character("Ann", "a girl with red hair")], panels)
        engine.render(story, settings)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = engine.render(story, settings)
        if device.type == "cuda":
            torch.cuda.synchronize()
        row = {"seconds": round(time.perf_counter() - start, 3), "pictures": len(result.images),
               "steps": settings.steps}
        if device.type == "cuda":
            row["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        out[name] = row
        print(name, row, flush=True)
    out["story_one_pose_vs_plain"] = round(out["story_one_pose"]["seconds"] / out["story_plain"]["seconds"], 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny UNet on the CPU (checks the script)")
    parser.add_argument("--story", action="store_true", help="also a short story with and without a pose")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    torch.backends.cuda.matmul.allow_tf32 = True
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__,
              "command": "python benchmarks/controlnet_h200.py" + (" --tiny" if args.tiny else "")
              + (" --story" if args.story else "")}
    import diffusers

    result["diffusers"] = diffusers.__version__
    result.update(unet_rows(args.tiny, device, dtype, args.warmup, args.repeat))
    if args.story:
        result.update(story_rows(args.tiny, device, dtype))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
