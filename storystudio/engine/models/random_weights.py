"""Random-weight Stable Diffusion models, built offline.

``create_tiny_model`` writes a tiny SD1.5- or SDXL-shaped model (tokenizer
included) in the normal diffusers folder layout, so tests and demos run the
real pipeline and the real loading code without network or GPU. Its images
are noise. ``build_pipeline(..., size="full")`` builds the real-size SD1.5 or
SDXL architecture in memory for benchmarks: cost does not depend on weight values.

The video stage's parts (AnimateDiff motion adapter, SparseCtrl-RGB, IP-Adapter
with its CLIP image encoder) are built the same way: ``create_tiny_video_models``
writes tiny ones in the layouts their Hub repositories use, and
``build_video_components(size="full")`` builds the real-size ones in memory.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch

from ...resources_path import resources_dir

ARCHES = ("sd15", "sdxl")

# The same schedule the released SD1.5 and SDXL checkpoints were trained with.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    timestep_spacing="leading",
    prediction_type="epsilon",
)


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from bytes to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _corpus() -> str:
    """Text the tiny tokenizer learns its merges from: the example stories and styles."""
    texts = []
    root = resources_dir()
    for entry in sorted((root / "examples").iterdir()):
        if entry.name.endswith(".txt"):
            texts.append(entry.read_text(encoding="utf-8"))
    styles = root / "styles.json"
    if styles.is_file():
        texts.append(styles.read_text(encoding="utf-8"))
    return "\n".join(texts)


def build_tiny_tokenizer(merges_wanted: int = 600):
    """A CLIP tokenizer with a small byte-level BPE vocabulary learned from the bundled texts."""
    from transformers import CLIPTokenizer

    byte_chars = list(_bytes_to_unicode().values())
    words = Counter(re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", _corpus().lower()))
    # Each word as a tuple of symbols, the last one marked as a word end.
    vocab_words = {tuple(w[:-1]) + (w[-1] + "</w>",): n for w, n in words.items() if w.isascii()}
    merges: list[tuple[str, str]] = []
    for _ in range(merges_wanted):
        pairs: Counter = Counter()
        for word, n in vocab_words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged = {}
        for word, n in vocab_words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] = n
        vocab_words = merged
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _text_config(tokenizer, size: str, second: bool):
    from transformers import CLIPTextConfig

    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=77,
    )
    if size == "tiny":
        return CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, projection_dim=32, **ids)
    if second:  # OpenCLIP ViT-bigG/14 text tower
        return CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280, hidden_act="gelu", **ids)
    return CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu", **ids)


def _unet_config(arch: str, size: str) -> dict:
    if size == "full" and arch == "sd15":  # stable-diffusion-v1-5's unet/config.json
        return dict(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=8, cross_attention_dim=768,
        )
    if size == "full":
        return dict(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
    common = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                  block_out_channels=(32, 64, 64), norm_num_groups=8, attention_head_dim=8)
    if arch == "sd15":
        return dict(common, cross_attention_dim=32,
                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    return dict(common, cross_attention_dim=64, use_linear_projection=True,
                transformer_layers_per_block=(1, 1, 2),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                addition_embed_type="text_time", addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=8 * 6 + 32)


def _vae_config(arch: str, size: str) -> dict:
    blocks = 4  # four levels: latents are 1/8 of the image, as in the real models
    if size == "full":
        channels, groups, layers = (128, 256, 512, 512), 32, 2
    else:
        channels, groups, layers = (16,) * blocks, 8, 1
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=layers,
        block_out_channels=channels, norm_num_groups=groups,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        scaling_factor=0.13025 if arch == "sdxl" else 0.18215,
        force_upcast=arch == "sdxl",
    )


def build_pipeline(arch: str, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """A StableDiffusion(XL)Pipeline with random weights, in memory."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    with torch.device(device):
        unet = UNet2DConditionModel(**_unet_config(arch, size))
        vae = AutoencoderKL(**_vae_config(arch, size))
        if arch == "sd15":
            text_encoder = CLIPTextModel(_text_config(tokenizer, size, second=False))
        else:
            text_encoder = CLIPTextModel(_text_config(tokenizer, size, second=False))
            text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer, size, second=True))
    scheduler = EulerDiscreteScheduler(**SCHEDULER_CONFIG)
    parts = dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    if arch == "sd15":
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLPipeline(**parts, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)


def create_tiny_model(folder: str | Path, arch: str = "sd15", seed: int = 0) -> Path:
    """Write a tiny random-weight model in the diffusers folder layout (safetensors weights)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; choose a new folder for the tiny model.")
    pipe = build_pipeline(arch, "tiny", seed=seed)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# ---- the video stage: AnimateDiff motion adapter, SparseCtrl-RGB, IP-Adapter and its image encoder

# Where each part lives inside the folder that create_tiny_video_models writes (the IP-Adapter folder
# mirrors the h94/IP-Adapter repository: weights and image encoder under models/).
TINY_VIDEO_LAYOUT = {
    "base": "sd15",
    "motion_adapter": "animatediff-motion-adapter",
    "sparsectrl": "animatediff-sparsectrl-rgb",
    "ip_adapter": "ip-adapter",
}
IP_ADAPTER_WEIGHTS = "models/ip-adapter_sd15.safetensors"
IP_IMAGE_ENCODER = "models/image_encoder"


def _motion_adapter_config(size: str, version: str = "v3") -> dict:
    if size == "full":  # guoyww/animatediff-motion-adapter-v1-5-2 (v2) and -v1-5-3 (v3): v3 has no mid-block module
        return dict(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                    motion_norm_num_groups=32, motion_num_attention_heads=8, motion_max_seq_length=32,
                    use_motion_mid_block=version == "v2")
    return dict(block_out_channels=(32, 64, 64), motion_layers_per_block=1, motion_norm_num_groups=8,
                motion_num_attention_heads=2, motion_max_seq_length=32, use_motion_mid_block=version == "v2")


def _sparsectrl_config(size: str) -> dict:
    # SparseCtrl-RGB: keyframes enter as VAE latents (4 channels, plus the mask channel), through a
    # single convolution ("simplified condition embedding"); the scribble model takes 3-channel pictures.
    rgb = dict(conditioning_channels=4, use_simplified_condition_embedding=True, concat_conditioning_mask=True,
               motion_max_seq_length=32)
    if size == "full":  # guoyww/animatediff-sparsectrl-rgb: the class defaults (SD1.5's encoder half)
        return dict(rgb, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                    attention_head_dim=8, norm_num_groups=32, motion_num_attention_heads=8)
    return dict(rgb, block_out_channels=(32, 64, 64), layers_per_block=1, cross_attention_dim=32,
                attention_head_dim=8, norm_num_groups=8, motion_num_attention_heads=2,
                down_block_types=("CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion", "DownBlockMotion"))


def _image_encoder_config(size: str):
    from transformers import CLIPVisionConfig

    if size == "full":  # OpenCLIP ViT-H/14 as shipped in h94/IP-Adapter models/image_encoder
        return CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                                patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu",
                                layer_norm_eps=1e-5)
    return CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                            patch_size=8, image_size=32, projection_dim=16, hidden_act="gelu")


def _wake(module: torch.nn.Module, std: float = 0.02) -> None:
    """Give zero-initialised layers (ControlNet outputs, motion-module outputs) small random weights,
    so that in a random model these parts change the result as they do in a trained one."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, std)


def ip_adapter_state_dict(unet, image_embed_dim: int, seed: int = 0, tokens: int = 4) -> dict[str, dict[str, torch.Tensor]]:
    """Random IP-Adapter weights for ``unet`` (a UNet2DConditionModel), in the layout of h94's ip-adapter_sd15.

    ``image_proj``: a linear map from one CLIP image embedding to ``tokens`` tokens of the UNet's
    cross-attention width, then a layer norm. ``ip_adapter``: a key and a value projection per
    cross-attention layer, numbered by the layer's position among all of the UNet's attention
    processors (self- and cross-attention alternate, so the numbers are 1, 3, 5, ...), as the
    original IP-Adapter code saved them.
    """
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    proj = {
        "proj.weight": torch.randn(tokens * cross, image_embed_dim, generator=g) / image_embed_dim**0.5,
        "proj.bias": torch.randn(tokens * cross, generator=g) * 0.02,
        "norm.weight": torch.ones(cross),
        "norm.bias": torch.zeros(cross),
    }
    layers = {}
    for index, name in enumerate(unet.attn_processors):
        if not name.endswith("attn2.processor"):
            continue
        attn = unet.get_submodule(name.removesuffix(".processor"))
        hidden, width = attn.to_k.out_features, attn.to_k.in_features
        for part in ("to_k_ip", "to_v_ip"):
            layers[f"{index}.{part}.weight"] = torch.randn(hidden, width, generator=g) / width**0.5
    return {"image_proj": proj, "ip_adapter": layers}


def build_video_components(size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32,
                           device: str = "cpu", motion: str = "v3") -> dict:
    """Random-weight parts of the video stage, in memory.

    Returns ``base`` (a StableDiffusionPipeline), ``motion_adapter``, ``controlnet`` (SparseCtrl-RGB),
    ``image_encoder`` (CLIPVisionModelWithProjection) and ``ip_adapter`` (a state dict as
    ``load_ip_adapter`` takes it). ``size="full"``: the real SD1.5 / AnimateDiff / SparseCtrl /
    ViT-H architectures, for benchmarks.
    """
    from diffusers import MotionAdapter, SparseControlNetModel
    from transformers import CLIPVisionModelWithProjection

    base = build_pipeline("sd15", size, seed=seed, device=device)
    torch.manual_seed(seed + 1)
    with torch.device(device):
        adapter = MotionAdapter(**_motion_adapter_config(size, motion))
        controlnet = SparseControlNetModel(**_sparsectrl_config(size))
        encoder_config = _image_encoder_config(size)
        image_encoder = CLIPVisionModelWithProjection(encoder_config)
    _wake(adapter)
    _wake(controlnet)
    ip = ip_adapter_state_dict(base.unet, encoder_config.projection_dim, seed=seed + 2)
    ip = {part: {k: v.to(device, dtype) for k, v in tensors.items()} for part, tensors in ip.items()}
    parts = dict(base=base, motion_adapter=adapter, controlnet=controlnet, image_encoder=image_encoder)
    if dtype != torch.float32:
        parts = {k: v.to(dtype=dtype) for k, v in parts.items()}
    parts["ip_adapter"] = ip
    return parts


def create_tiny_video_models(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write tiny random video-stage models in the layouts of their Hub repositories.

    Returns the folder of each part, keyed like ``load_video_models``' arguments: ``base`` (a tiny SD1.5
    model), ``motion_adapter``, ``sparsectrl`` and ``ip_adapter`` (holding
    ``models/ip-adapter_sd15.safetensors`` and ``models/image_encoder/`` as h94/IP-Adapter does).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; choose a new folder for the tiny video models.")
    parts = build_video_components("tiny", seed=seed)
    out = {key: folder / name for key, name in TINY_VIDEO_LAYOUT.items()}
    parts["base"].save_pretrained(out["base"], safe_serialization=True)
    parts["motion_adapter"].save_pretrained(out["motion_adapter"], safe_serialization=True)
    parts["controlnet"].save_pretrained(out["sparsectrl"], safe_serialization=True)
    parts["image_encoder"].save_pretrained(out["ip_adapter"] / IP_IMAGE_ENCODER)
    flat = {f"{part}.{k}": v.contiguous() for part, tensors in parts["ip_adapter"].items() for k, v in tensors.items()}
    save_file(flat, str(out["ip_adapter"] / IP_ADAPTER_WEIGHTS))
    return out


# ---- reference photos: an IP-Adapter Plus (face) and its image encoder --------------------------------------

#: Where create_tiny_photo_adapter puts the files: the layout of h94/IP-Adapter (see engine/story/photos.py).
PHOTO_ADAPTER_WEIGHTS = {"sdxl": "sdxl_models/ip-adapter-plus-face_sdxl_vit-h.safetensors",
                         "sd15": "models/ip-adapter-plus-face_sd15.safetensors"}


def _resampler_shape(arch: str, size: str) -> dict:
    """The image projection ("Resampler") of IP-Adapter Plus: SDXL's plus-face (dim 1280, 20 heads, 16 tokens
    of 2048), SD1.5's (dim 768, 12 heads, 16 tokens of 768), both reading ViT-H's 1280-wide hidden states."""
    if size == "full":
        dim = 1280 if arch == "sdxl" else 768
        return dict(dim=dim, heads=dim // 64, queries=16, depth=4)
    return dict(dim=64, heads=1, queries=4, depth=4)


def ip_adapter_plus_state_dict(unet, encoder_width: int, arch: str, size: str = "tiny",
                               seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Random IP-Adapter Plus weights for ``unet``, with the key names of the original Resampler checkpoints
    (``latents``, ``proj_in``, ``layers.<i>.0`` perceiver attention, ``layers.<i>.1`` feed-forward,
    ``proj_out``, ``norm_out``) and ``<n>.to_{k,v}_ip`` per cross-attention layer (n = 1, 3, 5, ...)."""
    shape = _resampler_shape(arch, size)
    dim, inner, out = shape["dim"], shape["heads"] * 64, unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(seed)

    def lin(o: int, i: int) -> torch.Tensor:
        return torch.randn(o, i, generator=g) / i**0.5

    proj: dict[str, torch.Tensor] = {
        "latents": torch.randn(1, shape["queries"], dim, generator=g) / dim**0.5,
        "proj_in.weight": lin(dim, encoder_width), "proj_in.bias": torch.zeros(dim),
        "proj_out.weight": lin(out, dim), "proj_out.bias": torch.zeros(out),
        "norm_out.weight": torch.ones(out), "norm_out.bias": torch.zeros(out),
    }
    for i in range(shape["depth"]):
        for norm in ("0.norm1", "0.norm2", "1.0"):
            proj[f"layers.{i}.{norm}.weight"] = torch.ones(dim)
            proj[f"layers.{i}.{norm}.bias"] = torch.zeros(dim)
        proj[f"layers.{i}.0.to_q.weight"] = lin(inner, dim)
        proj[f"layers.{i}.0.to_kv.weight"] = lin(2 * inner, dim)
        proj[f"layers.{i}.0.to_out.weight"] = lin(dim, inner)
        proj[f"layers.{i}.1.1.weight"] = lin(4 * dim, dim)
        proj[f"layers.{i}.1.3.weight"] = lin(dim, 4 * dim)
    layers = {}
    number = 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        attn = unet.get_submodule(name.removesuffix(".processor"))
        hidden, width = attn.to_k.out_features, attn.to_k.in_features
        for part in ("to_k_ip", "to_v_ip"):
            layers[f"{number}.{part}.weight"] = lin(hidden, width)
        number += 2
    return {"image_proj": proj, "ip_adapter": layers}


def build_photo_adapter_parts(unet, arch: str, size: str = "tiny", seed: int = 0):
    """(image encoder, IP-Adapter Plus state dict) with random weights: ViT-H/14 at ``size="full"``."""
    from transformers import CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = _image_encoder_config(size)
    encoder = CLIPVisionModelWithProjection(config)
    return encoder, ip_adapter_plus_state_dict(unet, config.hidden_size, arch, size, seed=seed + 1)


def create_tiny_photo_adapter(folder: str | Path, unet, arch: str, seed: int = 0) -> Path:
    """Write a tiny random IP-Adapter Plus face model for ``unet`` in h94/IP-Adapter's layout
    (``PHOTO_ADAPTER_WEIGHTS[arch]`` and ``models/image_encoder/``); returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    encoder, state = build_photo_adapter_parts(unet, arch, "tiny", seed)
    encoder.save_pretrained(folder / IP_IMAGE_ENCODER)
    target = folder / PHOTO_ADAPTER_WEIGHTS[arch]
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{part}.{k}": v.contiguous() for part, tensors in state.items() for k, v in tensors.items()},
              str(target))
    return folder


# ---- ControlNets (poses, depth, line art) ------------------------------------------------------------

def build_controlnet(unet, size: str = "tiny", seed: int = 0):
    """A ControlNet with random weights shaped for ``unet`` (a UNet2DConditionModel), in memory.

    ``full`` on the SDXL UNet is the architecture of the SDXL ControlNets in the catalog (a copy of the
    UNet's encoder and middle block, 1.25 B parameters); ``tiny`` shrinks only the control picture's
    encoder. Its zero-initialised outputs get small random weights, so a random ControlNet changes the
    picture as a trained one does.
    """
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    channels = (16, 32, 96, 256) if size == "full" else (8, 8, 16, 16)  # three halvings: latents are 1/8
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels,
                                    load_weights_from_unet=False)
    _wake(net)
    return net


def create_tiny_controlnet(folder: str | Path, model_folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ControlNet for the tiny model in ``model_folder``, in the diffusers layout of the
    Hub's ControlNets (``config.json`` and ``diffusion_pytorch_model.safetensors``)."""
    from diffusers import UNet2DConditionModel

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty; choose a new folder for the tiny ControlNet.")
    unet = UNet2DConditionModel.from_pretrained(str(model_folder), subfolder="unet")
    build_controlnet(unet, "tiny", seed).save_pretrained(folder, safe_serialization=True)
    return folder
