"""The diffusion transition backend: AnimateDiff + SparseCtrl-RGB + per-frame IP-Adapter embeddings.

A training-free stand-in for StoryDiffusion's Semantic Motion Predictor
(STORYDIFFUSION.md section 5), built from released parts:

- an SD1.5-family base model (UNet, VAE, CLIP text encoder, tokenizer) turned
  into a video model by an AnimateDiff motion adapter;
- SparseCtrl-RGB holds the two keyframes at the first and the last frame
  (``controlnet_frame_indices=[0, N-1]``);
- the keyframes' CLIP image embeddings (ViT-H/14, as the IP-Adapter was
  trained with) are interpolated spherically over the N frames and frame f
  attends, through the IP-Adapter, to the tokens projected from *its*
  embedding: ``video_pipeline.PerFrameIPAdapterAttnProcessor``.

The model makes N frames (16, AnimateDiff's training length) at its own size
(512x512 for SD1.5); they are resampled to the animatic's frame count and
cover-cropped to its size. Models are found offline by default, with the same
rules as ``models.load_model``; missing ones give a plain ``ModelError``.
Nothing here imports Qt, and diffusers is imported only when models load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ModelError
from ..models.base import has_file, is_path
from ..models.loading import load_model, pick_device, pick_dtype
from .transitions import Cancel, Progress, TransitionCancelled, TransitionRequest, cover, slerp

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-3"
DEFAULT_SPARSECTRL = "guoyww/animatediff-sparsectrl-rgb"
DEFAULT_IP_ADAPTER = "h94/IP-Adapter"
DEFAULT_IP_ADAPTER_WEIGHTS = "models/ip-adapter_sd15.safetensors"
DEFAULT_IMAGE_ENCODER = "models/image_encoder"  # inside the IP-Adapter repository or folder
NATIVE_FRAMES = 16  # AnimateDiff's motion modules were trained on 16-frame clips

# What the backend needs. Parameter counts are those of the architectures (benchmarks/transition_sd15.py
# prints them); download sizes follow from them at the precision the Hub files are stored in.
VIDEO_MODEL_CATALOG = [
    dict(part="base", id=DEFAULT_BASE, params_millions=1066,
         what="SD1.5 base: UNet 860 M, VAE 84 M, CLIP text encoder 123 M, tokenizer (any SD1.5 model works)",
         download="2.1 GB as fp16 files, 4.3 GB as fp32"),
    dict(part="motion_adapter", id=DEFAULT_MOTION_ADAPTER, params_millions=417,
         what="AnimateDiff v3 motion modules (guoyww/animatediff-motion-adapter-v1-5-2, v2, works too)",
         download="1.7 GB (fp32)"),
    dict(part="sparsectrl", id=DEFAULT_SPARSECTRL, params_millions=497,
         what="SparseCtrl RGB: holds the keyframes at the first and last frame", download="2.0 GB (fp32)"),
    dict(part="ip_adapter", id=f"{DEFAULT_IP_ADAPTER} {DEFAULT_IP_ADAPTER_WEIGHTS}", params_millions=22,
         what="IP-Adapter for SD1.5: one image embedding -> 4 cross-attention tokens", download="45 MB (fp16)"),
    dict(part="image_encoder", id=f"{DEFAULT_IP_ADAPTER} {DEFAULT_IMAGE_ENCODER}", params_millions=632,
         what="OpenCLIP ViT-H/14 image encoder (CLIPVisionModelWithProjection)", download="2.5 GB (fp32)"),
]

_ROLES = {
    "base": "the SD1.5 base model",
    "motion_adapter": "the AnimateDiff motion module",
    "sparsectrl": "the SparseCtrl RGB model",
    "ip_adapter": "the IP-Adapter weights",
    "image_encoder": "the IP-Adapter's image encoder",
}


@dataclass
class VideoModels:
    """A loaded transition pipeline and where its parts came from."""

    pipe: Any  # video_pipeline.TransitionPipeline
    sources: dict[str, str]
    device: torch.device
    dtype: torch.dtype
    native_frames: int = NATIVE_FRAMES

    @property
    def native_size(self) -> tuple[int, int]:
        """(width, height) the base model was trained at: 512x512 for SD1.5."""
        side = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return side, side

    @property
    def max_frames(self) -> int:
        """The longest clip the motion modules' position embeddings cover."""
        return int(self.pipe.unet.config.motion_max_seq_length)


# ---- finding the parts ----------------------------------------------------------------

def _missing_part(part: str, source: str, filename: str, why: str) -> str | None:
    """A plain sentence about one part that is not on this computer, or None when it is."""
    role = _ROLES[part]
    if is_path(source):
        path = Path(source).expanduser()
        if part == "base" and path.is_file():
            return None
        if not path.exists():
            return f"{role}: {path} does not exist"
        if not (path / filename).is_file():
            return f"{role}: {path} has no {filename}{why}"
        return None
    if has_file(source, filename):
        return None
    return f'{role} "{source}" ({filename}) is not in the Hugging Face cache'


def check_video_models(
    base: str = DEFAULT_BASE,
    motion_adapter: str = DEFAULT_MOTION_ADAPTER,
    sparsectrl: str = DEFAULT_SPARSECTRL,
    ip_adapter: str = DEFAULT_IP_ADAPTER,
    ip_adapter_weights: str = DEFAULT_IP_ADAPTER_WEIGHTS,
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
) -> list[str]:
    """What the diffusion transitions miss on this computer, one plain phrase per part (empty: all there).

    Only looks at files (no weights are read), so the UI can ask it before offering the backend.
    """
    encoder_source, encoder_dir = _image_encoder_location(ip_adapter, image_encoder)
    checks = [
        ("base", base, "model_index.json", ", so it is not a diffusers model folder"),
        ("motion_adapter", motion_adapter, "config.json", ", so it is not a diffusers model folder"),
        ("sparsectrl", sparsectrl, "config.json", ", so it is not a diffusers model folder"),
        ("ip_adapter", ip_adapter, ip_adapter_weights, ""),
        ("image_encoder", encoder_source, f"{encoder_dir}/config.json" if encoder_dir else "config.json", ""),
    ]
    missing = []
    for part, source, filename, why in checks:
        problem = _missing_part(part, source, filename, why)
        if problem:
            missing.append(problem)
    return missing


def _image_encoder_location(ip_adapter: str, image_encoder: str) -> tuple[str, str | None]:
    """(source, subfolder) of the image encoder: a folder of its own (an absolute path, or one starting
    with "." or "~"), or else a folder inside the IP-Adapter's folder or repository."""
    if Path(image_encoder).expanduser().is_absolute() or image_encoder.startswith((".", "~")):
        return str(Path(image_encoder).expanduser()), None
    return ip_adapter, image_encoder.strip("/")


def _load_part(cls: Any, part: str, source: str, allow_download: bool, common: dict, subfolder: str | None = None):
    kwargs = dict(common)
    if subfolder:
        kwargs["subfolder"] = subfolder
    local = is_path(source)
    try:
        return cls.from_pretrained(str(Path(source).expanduser()) if local else source,
                                   local_files_only=local or not allow_download, **kwargs)
    except (OSError, ValueError) as exc:
        role = _ROLES[part]
        raise ModelError(f"{role[0].upper()}{role[1:]} ({source}) could not be loaded: {exc}") from exc


def load_video_models(
    base: str = DEFAULT_BASE,
    motion_adapter: str = DEFAULT_MOTION_ADAPTER,
    sparsectrl: str = DEFAULT_SPARSECTRL,
    ip_adapter: str = DEFAULT_IP_ADAPTER,
    ip_adapter_weights: str = DEFAULT_IP_ADAPTER_WEIGHTS,
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
    device: str = "auto",
    dtype: str = "auto",
    allow_download: bool = False,
) -> VideoModels:
    """Load the transition pipeline from folders or Hub ids (Hugging Face cache only unless downloads are allowed).

    ``base`` is anything ``models.load_model`` takes (an SD1.5 folder, single
    ``.safetensors`` file or Hub id); ``motion_adapter`` and ``sparsectrl``
    are diffusers model folders or Hub ids; ``ip_adapter`` is a folder or Hub
    id holding ``ip_adapter_weights`` and, unless ``image_encoder`` is a
    folder of its own, the image encoder at ``image_encoder`` inside it (the
    layout of h94/IP-Adapter). Raises ``ModelError`` with a plain sentence when
    a part is missing or the parts do not fit together.
    """
    sources = dict(base=base, motion_adapter=motion_adapter, sparsectrl=sparsectrl, ip_adapter=ip_adapter,
                   ip_adapter_weights=ip_adapter_weights, image_encoder=image_encoder)
    if not allow_download:
        missing = check_video_models(base, motion_adapter, sparsectrl, ip_adapter, ip_adapter_weights, image_encoder)
        if missing:
            raise ModelError(
                "The diffusion transitions need models that are not on this computer: " + "; ".join(missing)
                + ". Download them first (docs/ENGINE.md lists them), or allow downloads."
            )
    from diffusers import MotionAdapter, SparseControlNetModel
    from transformers import CLIPVisionModelWithProjection

    from ..models.loading import _dtype_kwargs

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    try:
        base_model = load_model(base, device="cpu", dtype=str(dt).removeprefix("torch."), allow_download=allow_download)
    except ModelError as exc:
        raise ModelError(f"The base model of the diffusion transitions cannot be used: {exc}") from exc
    if base_model.arch != "sd15":
        raise ModelError(
            f"{base_model.name} is an {base_model.arch.upper()} model; AnimateDiff's motion modules work with "
            "SD1.5 models only. Choose an SD1.5 model as the base of the diffusion transitions."
        )
    common = _dtype_kwargs(dt)
    adapter = _load_part(MotionAdapter, "motion_adapter", motion_adapter, allow_download, dict(common, use_safetensors=True))
    controlnet = _load_part(SparseControlNetModel, "sparsectrl", sparsectrl, allow_download,
                            dict(common, use_safetensors=True))
    encoder_source, encoder_dir = _image_encoder_location(ip_adapter, image_encoder)
    encoder = _load_part(CLIPVisionModelWithProjection, "image_encoder", encoder_source, allow_download,
                         {"dtype": dt}, subfolder=encoder_dir)
    weights = Path(ip_adapter_weights)
    ip_local = is_path(ip_adapter)
    ip_kwargs = dict(subfolder=weights.parent.as_posix() if weights.parent != Path(".") else None,
                     weight_name=weights.name, local_files_only=ip_local or not allow_download)
    ip_source = str(Path(ip_adapter).expanduser()) if ip_local else ip_adapter
    pipe = build_video_pipeline(base_model.pipe, adapter, controlnet, encoder, ip_source, dev, ip_kwargs, sources)
    return VideoModels(pipe=pipe, sources=sources, device=dev, dtype=dt)


def motion_unet(unet: Any, adapter: Any) -> Any:
    """The UNetMotionModel of a UNet2DConditionModel and a motion adapter, built without random initialisation.

    ``UNetMotionModel.from_unet2d`` creates the whole model with fresh random
    weights (in float32) and then overwrites every one of them; skipping the
    initialisation saves seconds of CPU time for a real SD1.5 model.
    """
    from diffusers import UNetMotionModel
    from diffusers.models.modeling_utils import no_init_weights

    with no_init_weights(), torch.device(unet.device):
        return UNetMotionModel.from_unet2d(unet, adapter)


def build_video_pipeline(base: Any, adapter: Any, controlnet: Any, image_encoder: Any, ip_adapter: Any,
                         device: torch.device | str, ip_kwargs: dict | None = None,
                         sources: dict[str, str] | None = None) -> Any:
    """The TransitionPipeline from its parts (a StableDiffusionPipeline, motion adapter, SparseCtrl, image encoder).

    ``ip_adapter`` is what ``load_ip_adapter`` takes: a folder or Hub id (with
    ``ip_kwargs``: subfolder, weight_name, local_files_only) or a state dict
    with ``image_proj`` and ``ip_adapter`` parts. Random-weight benchmarks use
    the same function as the loader.
    """
    from diffusers import DDIMScheduler
    from diffusers.models.embeddings import ImageProjection

    from .pipeline import TransitionPipeline

    names = {k: f"{_ROLES.get(k, k)} ({v})" for k, v in (sources or {}).items() if k in _ROLES}
    names = {k: names.get(k, _ROLES[k]) for k in _ROLES}
    unet_cfg, cn_cfg, ad_cfg = base.unet.config, controlnet.config, adapter.config
    if not (cn_cfg.use_simplified_condition_embedding and cn_cfg.conditioning_channels == 4):
        raise ModelError(
            f"{names['sparsectrl']} is not a SparseCtrl RGB model (a scribble model, perhaps); the transitions "
            f"need the RGB one ({DEFAULT_SPARSECTRL})."
        )
    if list(cn_cfg.block_out_channels) != list(unet_cfg.block_out_channels) or \
            cn_cfg.cross_attention_dim != unet_cfg.cross_attention_dim:
        raise ModelError(f"{names['sparsectrl']} does not fit {names['base']}: they were made for different model families.")
    if list(ad_cfg.block_out_channels) != list(unet_cfg.block_out_channels):
        raise ModelError(f"{names['motion_adapter']} does not fit {names['base']}: they were made for different model families.")
    try:
        unet = motion_unet(base.unet, adapter)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{names['motion_adapter']} does not fit {names['base']}: {exc}") from exc
    # AnimateDiff's motion modules were trained with SD1.5's betas on a linear schedule; DDIM, no clipping.
    scheduler = DDIMScheduler.from_config(base.scheduler.config, beta_schedule="linear", clip_sample=False,
                                          timestep_spacing="linspace", steps_offset=1)
    pipe = TransitionPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet,
                              motion_adapter=None, controlnet=controlnet, scheduler=scheduler,
                              feature_extractor=None, image_encoder=image_encoder)
    kwargs = dict(ip_kwargs or {})
    try:
        pipe.load_ip_adapter(ip_adapter, kwargs.pop("subfolder", None), kwargs.pop("weight_name", None),
                             image_encoder_folder=None, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"{names['ip_adapter']} could not be loaded into {names['base']}: {exc}") from exc
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    if not isinstance(projection, ImageProjection):
        raise ModelError(
            f"{names['ip_adapter']} is an IP-Adapter Plus or FaceID model; the transitions interpolate the plain "
            "IP-Adapter's image embeddings (ip-adapter_sd15)."
        )
    if projection.image_embeds.in_features != image_encoder.config.projection_dim:
        raise ModelError(
            f"{names['image_encoder']} makes {image_encoder.config.projection_dim}-wide embeddings but "
            f"{names['ip_adapter']} takes {projection.image_embeds.in_features}; use the image encoder it was made with."
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# ---- making a clip ----------------------------------------------------------------------

@dataclass
class DiffusionOptions:
    """The backend's ``request.options``; keys it does not know are ignored (they belong to other backends)."""

    steps: int = 25
    guidance: float = 7.5
    ip_scale: float = 0.7  # how strongly the interpolated keyframe embeddings steer each frame
    control_scale: float = 1.0  # how strongly SparseCtrl holds the keyframes at the ends
    native_frames: int = NATIVE_FRAMES
    width: int | None = None  # the clip's size before resizing; None: the model's own (512 for SD1.5)
    height: int | None = None
    prompt: str | None = None  # None: the two panels' prompts
    negative_prompt: str = ""
    anchor_frames: int = 2  # output frames eased onto the exact keyframes at each end (0: none)

    @classmethod
    def from_request(cls, request: TransitionRequest, models: VideoModels) -> DiffusionOptions:
        known = {k: v for k, v in request.options.items() if k in cls.__dataclass_fields__}
        opts = cls(**known)
        w, h = models.native_size
        opts.width = int(opts.width or w)
        opts.height = int(opts.height or h)
        problems = []
        if int(opts.steps) < 1:
            problems.append("steps must be at least 1")
        if not 2 <= int(opts.native_frames) <= models.max_frames:
            problems.append(f"the clip must have between 2 and {models.max_frames} frames before resampling")
        if opts.width % 8 or opts.height % 8 or opts.width < 64 or opts.height < 64:
            problems.append("the clip's width and height must be multiples of 8, at least 64")
        if opts.guidance < 0 or opts.ip_scale < 0 or opts.control_scale < 0:
            problems.append("guidance, ip_scale and control_scale cannot be negative")
        if int(opts.anchor_frames) < 0:
            problems.append("anchor_frames cannot be negative")
        if problems:
            text = "; ".join(problems)
            raise ValueError(text[0].upper() + text[1:] + ".")
        return opts


def frame_embeddings(start: torch.Tensor, end: torch.Tensor, frames: int) -> torch.Tensor:
    """(frames, D): the keyframes' image embeddings interpolated spherically, frame f at t = f / (frames - 1)."""
    a = start.detach().double().cpu().numpy()
    b = end.detach().double().cpu().numpy()
    rows = [slerp(a, b, f / (frames - 1)) for f in range(frames)]
    return torch.from_numpy(np.stack(rows)).float()


class DiffusionTransitionBackend:
    """AnimateDiff + SparseCtrl-RGB with the keyframes at both ends and per-frame IP-Adapter embeddings."""

    name = "AnimateDiff + SparseCtrl (diffusion)"

    def __init__(self, models: VideoModels):
        from .pipeline import PerFrameIPAdapter

        self.models = models
        self.pipe = models.pipe
        # Installed only while a clip is made; tests and benchmarks may look at its state.
        self.per_frame = PerFrameIPAdapter(self.pipe.unet)

    # ---- pieces, public for tests and benchmarks
    @torch.no_grad()
    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """(len(images), D) CLIP image embeddings, computed as diffusers' IP-Adapter pipelines do."""
        pipe = self.pipe
        pixels = pipe.feature_extractor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        pixels = pixels.to(self.models.device, pipe.image_encoder.dtype)
        return pipe.image_encoder(pixels).image_embeds.float().cpu()

    def _latents(self, seed: int, frames: int, width: int, height: int) -> torch.Tensor:
        # Noise is drawn on the CPU so that a seed gives the same clip on every device.
        f = self.pipe.vae_scale_factor
        shape = (1, self.pipe.unet.config.in_channels, frames, height // f, width // f)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed)))
        return noise.to(self.models.device, self.pipe.unet.dtype)

    @staticmethod
    def prompt_of(request: TransitionRequest, opts: DiffusionOptions) -> str:
        if opts.prompt is not None:
            return opts.prompt
        parts = [p.strip() for p in (request.start_prompt, request.end_prompt) if p and p.strip()]
        return ", ".join(dict.fromkeys(parts))  # the same prompt twice is said once

    def render_native(self, request: TransitionRequest, progress: Progress | None = None,
                      cancel: Cancel | None = None) -> list[Image.Image]:
        """The model's own N frames at its own size, keyframes at frames 0 and N-1.

        Progress counts denoising steps, then decoded frames: ``steps + N`` in all.
        """
        request.check()
        opts = DiffusionOptions.from_request(request, self.models)
        n, steps = int(opts.native_frames), int(opts.steps)
        size = (opts.width, opts.height)
        total = steps + n
        if cancel is not None and cancel():
            raise TransitionCancelled
        start = cover(request.start.convert("RGB"), size)
        end = cover(request.end.convert("RGB"), size)
        pipe = self.pipe
        dtype = pipe.unet.dtype
        embeds = self.image_embeddings([start, end])
        per_frame = frame_embeddings(embeds[0], embeds[1], n)[None]  # (1, N, D): N "images" of one IP-Adapter
        cfg = opts.guidance > 1
        if cfg:  # the unconditional half sees the projection of a zero embedding, as in diffusers
            per_frame = torch.cat([torch.zeros_like(per_frame), per_frame])
        ip_embeds = [per_frame.to(self.models.device, dtype)]

        def on_step(_pipe: Any, i: int, _t: Any, kwargs: dict) -> dict:
            if cancel is not None and cancel():
                raise TransitionCancelled
            if progress is not None:
                progress(i + 1, total)
            return kwargs

        with self.per_frame:
            self.per_frame.frames = n
            pipe.set_ip_adapter_scale(float(opts.ip_scale))
            latents = pipe(
                prompt=self.prompt_of(request, opts),
                negative_prompt=opts.negative_prompt if cfg else None,
                num_frames=n, height=opts.height, width=opts.width,
                num_inference_steps=steps, guidance_scale=float(opts.guidance),
                latents=self._latents(request.seed, n, *size),
                ip_adapter_image_embeds=ip_embeds,
                conditioning_frames=[start, end], controlnet_frame_indices=[0, n - 1],
                controlnet_conditioning_scale=float(opts.control_scale),
                output_type="latent", callback_on_step_end=on_step,
            ).frames
        return self._decode(latents, steps, total, progress, cancel)

    def _decode(self, latents: torch.Tensor, done: int, total: int, progress: Progress | None,
                cancel: Cancel | None) -> list[Image.Image]:
        from ..imaging import decode_latents

        frames = latents[0].transpose(0, 1)  # (channels, N, h, w) -> (N, channels, h, w)
        images = []
        for i in range(frames.shape[0]):  # one frame at a time: the VAE's memory stays that of one picture
            if cancel is not None and cancel():
                raise TransitionCancelled
            images.extend(decode_latents(self.pipe.vae, frames[i : i + 1], self.pipe.video_processor))
            if progress is not None:
                progress(done + i + 1, total)
        return images

    def render(self, request: TransitionRequest, progress: Progress | None = None,
               cancel: Cancel | None = None) -> list[Image.Image]:
        """``request.frames`` pictures of ``request.size`` from the start keyframe to the end keyframe."""
        opts = DiffusionOptions.from_request(request, self.models)
        native = self.render_native(request, progress, cancel)
        return resample_frames(native, request.frames, request.size, request.start, request.end,
                               int(opts.anchor_frames))


def resample_frames(native: list[Image.Image], frames: int, size: tuple[int, int], start: Image.Image,
                    end: Image.Image, anchor: int = 0) -> list[Image.Image]:
    """``frames`` pictures of ``size`` from the model's frames: each cover-cropped, in-betweens cross-faded.

    Output frame i sits at position i * (N - 1) / (frames - 1) of the N model
    frames and mixes its two neighbours linearly. The first ``anchor`` frames
    ease from the exact start keyframe into the clip (and the last ones into
    the end keyframe), so the cut from a panel's hold into its transition
    does not jump.
    """
    arrays = [np.asarray(cover(im.convert("RGB"), size), dtype=np.float32) for im in native]
    n = len(arrays)
    out = []
    for i in range(frames):
        pos = i * (n - 1) / (frames - 1)
        lo = min(math.floor(pos), n - 1)
        hi = min(lo + 1, n - 1)
        w = pos - lo
        out.append(arrays[lo] * (1 - w) + arrays[hi] * w if w else arrays[lo].copy())
    if anchor > 0:
        keys = (np.asarray(cover(start.convert("RGB"), size), dtype=np.float32),
                np.asarray(cover(end.convert("RGB"), size), dtype=np.float32))
        for i in range(min(anchor, frames)):
            weight = 1 - i / anchor
            out[i] = keys[0] * weight + out[i] * (1 - weight)
            j = frames - 1 - i
            out[j] = keys[1] * weight + out[j] * (1 - weight)
    return [Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8)) for a in out]
