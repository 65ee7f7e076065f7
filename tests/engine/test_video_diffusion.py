"""The diffusion transition backend on tiny random AnimateDiff / SparseCtrl / IP-Adapter / CLIP vision models.

The models are written to disk in their Hub layouts and loaded by
``load_video_models``, the same code path a real model takes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from PIL import Image

from storystudio.engine.errors import ModelError
from storystudio.engine.models.random_weights import build_video_components, create_tiny_video_models
from storystudio.engine.video.transitions import TransitionCancelled, TransitionRequest, cover, slerp
from storystudio.engine.video.diffusion import (
    DiffusionTransitionBackend,
    build_video_pipeline,
    check_video_models,
    load_video_models,
    motion_unet,
    resample_frames,
)
from storystudio.engine.video.pipeline import PerFrameIPAdapterAttnProcessor


def _picture(size, seed):
    rng = np.random.default_rng(seed)
    # smooth colour gradients: different enough for the image encoder, not noise
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    base = rng.uniform(0, 255, 3)[None, None]
    slope = rng.uniform(-120, 120, (2, 3))
    return Image.fromarray(np.clip(base + slope[0] * x + slope[1] * y, 0, 255).astype(np.uint8))


START = _picture((80, 60), 1)
END = _picture((70, 90), 2)


@pytest.fixture(scope="module")
def video_dirs(tmp_path_factory):
    return create_tiny_video_models(tmp_path_factory.mktemp("video") / "models")


@pytest.fixture(scope="module")
def backend(video_dirs):
    models = load_video_models(**{k: str(v) for k, v in video_dirs.items()}, device="cpu")
    return DiffusionTransitionBackend(models)


def _request(**options):
    frames = options.pop("frames", 6)
    size = options.pop("size", (48, 32))
    seed = options.pop("seed", 3)
    return TransitionRequest(START, END, frames=frames, size=size, start_prompt="a girl reads a book",
                             end_prompt="a man paints a fence", seed=seed, options=dict(dict(steps=2), **options))


def _ip_layers(unet):
    return {n: p for n, p in unet.attn_processors.items() if isinstance(p, IPAdapterAttnProcessor2_0)}


def test_loads_through_the_real_code_path(backend, video_dirs):
    models = backend.models
    pipe = models.pipe
    assert type(pipe).__name__ == "TransitionPipeline" and type(pipe.unet).__name__ == "UNetMotionModel"
    assert models.native_size == (64, 64) and models.native_frames == 16 and models.max_frames == 32
    assert pipe.motion_adapter is None  # its weights live in the motion UNet; no second copy on the device
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.beta_schedule == "linear"
    layers = _ip_layers(pipe.unet)
    assert layers and not any(isinstance(p, PerFrameIPAdapterAttnProcessor) for p in layers.values())
    assert not any("motion_modules" in n for n in layers)
    assert check_video_models(**{k: str(v) for k, v in video_dirs.items()}) == []
    own_folder = str(video_dirs["ip_adapter"] / "models" / "image_encoder")  # the encoder given as a folder of its own
    assert check_video_models(**{k: str(v) for k, v in video_dirs.items()}, image_encoder=own_folder) == []


def test_end_to_end_frames_size_and_progress(backend):
    seen = []
    frames = backend.render(_request(frames=7, size=(40, 56)), progress=lambda done, total: seen.append((done, total)))
    assert len(frames) == 7 and all(f.size == (40, 56) and f.mode == "RGB" for f in frames)
    assert seen == [(i, 2 + 16) for i in range(1, 19)]  # 2 denoising steps, then 16 decoded frames
    # the ends are the keyframes themselves (anchor_frames=2), the frame after them half-way into the clip
    assert np.array_equal(np.asarray(frames[0]), np.asarray(cover(START, (40, 56))))
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(cover(END, (40, 56))))
    assert not np.array_equal(np.asarray(frames[1]), np.asarray(frames[0]))
    # after the pipeline the UNet has its own processors back
    assert not any(isinstance(p, PerFrameIPAdapterAttnProcessor) for p in backend.pipe.unet.attn_processors.values())
    assert backend.per_frame.frames is None


def _record_ip_inputs(unet):
    """Forward pre-hooks on the IP-Adapter key projection of every IP layer: the image tokens the attention gets."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, proc in _ip_layers(unet).items():
        def hook(module, args, name=name):
            seen.setdefault(name, []).append(args[0].detach().clone())
        hooks.append(proc.to_k_ip[0].register_forward_pre_hook(hook))
    return seen, hooks


@pytest.mark.parametrize("guidance", [7.5, 1.0])
def test_frame_f_attends_to_the_embedding_interpolated_for_f(backend, guidance):
    pipe = backend.pipe
    n, steps = 6, 2
    seen, hooks = _record_ip_inputs(pipe.unet)
    try:
        backend.render_native(_request(native_frames=n, steps=steps, guidance=guidance))
    finally:
        for h in hooks:
            h.remove()
    size = backend.models.native_size
    e0, e1 = backend.image_embeddings([cover(START, size), cover(END, size)]).double().numpy()
    wanted = np.stack([slerp(e0, e1, f / (n - 1)) for f in range(n)])
    assert np.allclose(wanted[0], e0) and np.allclose(wanted[-1], e1) and not np.allclose(wanted[2], wanted[3])
    with torch.no_grad():
        project = pipe.unet.encoder_hid_proj
        tokens = project([torch.from_numpy(wanted).float()[None]])[0][0]  # (n, 4, C)
        zero = project([torch.zeros(1, 1, wanted.shape[1])])[0][0, 0]  # (4, C)
    assert len(seen) == len(_ip_layers(pipe.unet))
    halves = 2 if guidance > 1 else 1
    for name, calls in seen.items():
        assert len(calls) == steps, name
        for got in calls:
            # one token set per row of the (halves x frames) batch, not the N sets diffusers would concatenate
            assert got.shape == (halves * n, 4, tokens.shape[-1]), name
            cond = got[(halves - 1) * n:]
            for f in range(n):
                torch.testing.assert_close(cond[f], tokens[f], rtol=1e-5, atol=1e-6)
            if halves == 2:  # the unconditional frames see the projection of a zero embedding
                for f in range(n):
                    torch.testing.assert_close(got[f], zero, rtol=1e-5, atol=1e-6)


def test_processor_without_frames_is_diffusers_own(backend):
    """Installed but idle (no clip being made), the processor gives exactly what diffusers' does."""
    pipe = backend.pipe
    unet = pipe.unet
    torch.manual_seed(0)
    sample = torch.randn(1, 4, 3, 8, 8)
    text = torch.randn(3, 77, unet.config.cross_attention_dim)  # the pipeline repeats the prompt per frame
    image = {"image_embeds": [torch.randn(1, 1, pipe.image_encoder.config.projection_dim)]}
    with torch.no_grad():
        plain = unet(sample, 10, encoder_hidden_states=text, added_cond_kwargs=image).sample
        with backend.per_frame:
            assert backend.per_frame.layers
            idle = unet(sample, 10, encoder_hidden_states=text, added_cond_kwargs=image).sample
    assert torch.equal(plain, idle)


def test_sparsectrl_holds_the_keyframes_at_the_first_and_last_frame(backend):
    pipe = backend.pipe
    n = 5
    calls = []
    hook = pipe.controlnet.register_forward_pre_hook(lambda m, a, kw: calls.append(kw), with_kwargs=True)
    try:
        backend.render_native(_request(native_frames=n, steps=1))
    finally:
        hook.remove()
    assert len(calls) == 1
    mask, cond = calls[0]["conditioning_mask"], calls[0]["controlnet_cond"]
    assert mask.shape[2] == n and cond.shape[2] == n
    held = [f for f in range(n) if mask[0, 0, f].bool().all()]
    assert held == [0, n - 1] and not mask[0, 0, 1 : n - 1].any()
    size = backend.models.native_size
    with torch.no_grad():
        for f, key in ((0, START), (n - 1, END)):
            pixels = torch.from_numpy(np.asarray(cover(key, size), dtype=np.float32) / 255).permute(2, 0, 1)[None]
            latent = pipe.vae.encode(2 * pixels - 1).latent_dist.mode() * pipe.vae.config.scaling_factor
            torch.testing.assert_close(cond[0, :, f], latent[0], rtol=1e-4, atol=1e-5)
    assert not cond[0, :, 1 : n - 1].any()


def test_cancel_mid_clip_stops_promptly(backend):
    unet_calls = []
    hook = backend.pipe.unet.register_forward_hook(lambda *a: unet_calls.append(1))
    done = []
    try:
        with pytest.raises(TransitionCancelled):
            backend.render(_request(steps=10), progress=lambda d, t: done.append(d), cancel=lambda: len(done) >= 2)
        assert len(unet_calls) == 3  # the step during which the user cancelled, no more
        # cancelling while the frames are decoded
        done.clear()
        with pytest.raises(TransitionCancelled):
            backend.render(_request(steps=2), progress=lambda d, t: done.append(d), cancel=lambda: len(done) >= 4)
        assert done == [1, 2, 3, 4]
    finally:
        hook.remove()
    assert not any(isinstance(p, PerFrameIPAdapterAttnProcessor) for p in backend.pipe.unet.attn_processors.values())
    with pytest.raises(TransitionCancelled):  # cancelled before anything started
        backend.render(_request(), cancel=lambda: True)


def test_same_seed_same_frames(backend):
    a = backend.render(_request(seed=11, anchor_frames=0))
    b = backend.render(_request(seed=11, anchor_frames=0))
    c = backend.render(_request(seed=12, anchor_frames=0))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, c))


def test_bad_options_are_refused_in_plain_words(backend):
    with pytest.raises(ValueError, match="between 2 and 32 frames"):
        backend.render(_request(native_frames=40))
    with pytest.raises(ValueError, match="multiples of 8"):
        backend.render(_request(width=60))
    with pytest.raises(ValueError, match="at least 1"):
        backend.render(_request(steps=0))


def test_missing_parts_give_a_plain_error(video_dirs, tmp_path):
    parts = {k: str(v) for k, v in video_dirs.items()}
    with pytest.raises(ModelError) as err:
        load_video_models(**dict(parts, sparsectrl=str(tmp_path / "nowhere"),
                                 motion_adapter="nobody/no-such-motion-adapter"), device="cpu")
    text = str(err.value)
    assert text.startswith("The diffusion transitions need models that are not on this computer:")
    assert f"the SparseCtrl RGB model: {tmp_path / 'nowhere'} does not exist" in text
    assert 'the AnimateDiff motion module "nobody/no-such-motion-adapter"' in text
    assert "is not in the Hugging Face cache" in text and "Download them first" in text
    assert "Traceback" not in text and "Error" not in text.split(":")[0]

    ip = tmp_path / "ip"
    shutil.copytree(video_dirs["ip_adapter"], ip)
    (ip / "models" / "ip-adapter_sd15.safetensors").unlink()
    problems = check_video_models(**dict(parts, ip_adapter=str(ip)))
    assert problems == [f"the IP-Adapter weights: {ip} has no models/ip-adapter_sd15.safetensors"]
    shutil.rmtree(ip / "models" / "image_encoder")
    assert check_video_models(**dict(parts, ip_adapter=str(ip)))[1] == (
        f"the IP-Adapter's image encoder: {ip} has no models/image_encoder/config.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_video_models(**dict(parts, motion_adapter=str(empty))) == [
        f"the AnimateDiff motion module: {empty} has no config.json, so it is not a diffusers model folder"]


def test_parts_that_do_not_fit_are_named(video_dirs, tiny_model_dirs):
    parts = {k: str(v) for k, v in video_dirs.items()}
    with pytest.raises(ModelError, match="is an SDXL model; AnimateDiff's motion modules work with SD1.5 models only"):
        load_video_models(**dict(parts, base=str(tiny_model_dirs["sdxl"])), device="cpu")
    c = build_video_components("tiny", seed=5)
    from diffusers import SparseControlNetModel

    scribble = SparseControlNetModel(**dict(c["controlnet"].config, conditioning_channels=3,
                                            use_simplified_condition_embedding=False,
                                            conditioning_embedding_out_channels=(8, 16)))
    with pytest.raises(ModelError, match="is not a SparseCtrl RGB model"):
        build_video_pipeline(c["base"], c["motion_adapter"], scribble, c["image_encoder"], c["ip_adapter"], "cpu")


def test_motion_unet_skips_only_the_random_init():
    """Building the motion UNet without initialising its weights gives exactly diffusers' model."""
    from diffusers import UNetMotionModel

    c = build_video_components("tiny", seed=7)
    fast = motion_unet(c["base"].unet, c["motion_adapter"]).state_dict()
    slow = UNetMotionModel.from_unet2d(c["base"].unet, c["motion_adapter"]).state_dict()
    assert fast.keys() == slow.keys()
    assert all(torch.equal(fast[k], slow[k]) for k in slow)


def test_resampling_cross_fades_between_model_frames():
    colours = [(0, 0, 0), (100, 100, 100), (200, 200, 200)]
    native = [Image.new("RGB", (16, 16), c) for c in colours]
    start, end = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    out = resample_frames(native, 5, (20, 10), start, end, anchor=0)
    assert [f.size for f in out] == [(20, 10)] * 5
    assert [f.getpixel((3, 3))[0] for f in out] == [0, 50, 100, 150, 200]
    eased = resample_frames(native, 5, (20, 10), start, end, anchor=2)
    assert eased[0].getpixel((0, 0)) == (255, 0, 0) and eased[-1].getpixel((0, 0)) == (0, 0, 255)
    red, green, blue = eased[1].getpixel((0, 0))  # half the keyframe, half the clip's frame there (50)
    assert 152 <= red <= 153 and green == blue == 25
    assert eased[2].getpixel((0, 0)) == (100, 100, 100)


HUB_SCRIPT = """
import json
from storystudio.engine.errors import ModelError
from storystudio.engine.models.loading import quiet_libraries
quiet_libraries()
from storystudio.engine.video.diffusion import check_video_models, load_video_models
ids = dict(base="org/base", motion_adapter="org/motion", sparsectrl="org/sparse", ip_adapter="org/ip")
report = {"missing": check_video_models(**ids)}
models = load_video_models(**ids, device="cpu")
report["pipeline"] = type(models.pipe).__name__
try:
    load_video_models(**dict(ids, motion_adapter="org/not-downloaded"), device="cpu")
except ModelError as exc:
    report["error"] = str(exc)
print(json.dumps(report))
"""


def test_hub_ids_are_found_in_the_hugging_face_cache_only(video_dirs, tmp_path):
    """Hub ids resolve through the Hugging Face cache, offline; an id that is not cached is named."""
    import json
    import os
    import subprocess
    import sys

    cache = tmp_path / "hub"
    for repo, part in (("org/base", "base"), ("org/motion", "motion_adapter"), ("org/sparse", "sparsectrl"),
                       ("org/ip", "ip_adapter")):
        entry = cache / f"models--{repo.replace('/', '--')}"
        shutil.copytree(video_dirs[part], entry / "snapshots" / ("0" * 40))
        (entry / "refs").mkdir()
        (entry / "refs" / "main").write_text("0" * 40)
    # the cache location is read when the libraries are imported: a fresh interpreter
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["missing"] == [] and report["pipeline"] == "TransitionPipeline"
    assert report["error"] == (
        "The diffusion transitions need models that are not on this computer: the AnimateDiff motion module "
        '"org/not-downloaded" (config.json) is not in the Hugging Face cache. Download them first '
        "(docs/ENGINE.md lists them), or allow downloads."
    )
