"""Model loading, device and precision choice, VAE safety, styles and PNG metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from ldm_checkpoint import save_ldm_checkpoint
from safetensors.torch import save_file

from storystudio.engine.models.base import model_folders
from storystudio.engine.imaging import decode_latents, preview_image, read_png_parameters, save_png
from storystudio.engine.errors import ModelError
from storystudio.engine.models.loading import detect_checkpoint_arch, load_model, pick_device, pick_dtype
from storystudio.engine.story.styles import get_style, style_names


def test_device_and_precision_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type in ("cpu", "mps")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cuda")) == torch.float16
    assert pick_dtype(torch.device("mps")) == torch.float16
    assert pick_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    with pytest.raises(ModelError, match="No CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(ModelError, match="Unknown device"):
        pick_device("tpu")
    with pytest.raises(ModelError, match="Unknown precision"):
        pick_dtype(torch.device("cpu"), "fp8")


def test_loads_folders_of_both_architectures(tiny_model_dirs):
    for arch, folder in tiny_model_dirs.items():
        model = load_model(str(folder), device="cpu", dtype="fp32")
        assert model.arch == arch and model.device.type == "cpu" and model.dtype == torch.float32
        assert type(model.pipe).__name__ == {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}[arch]
        assert model.pipe.unet.dtype == torch.float32


def test_override_precision(tiny_model_dirs):
    model = load_model(str(tiny_model_dirs["sd15"]), device="cpu", dtype="bf16")
    assert model.pipe.unet.dtype == torch.bfloat16 and model.dtype == torch.bfloat16


def test_folder_errors(tmp_path, tiny_model_dirs):
    with pytest.raises(ModelError, match="not a diffusers model folder"):
        load_model(str(tmp_path), device="cpu")
    other = tmp_path / "flux"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelError, match="holds a FluxPipeline model"):
        load_model(str(other), device="cpu")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "missing.safetensors"), device="cpu")


def test_pickled_checkpoints_are_refused(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not even read")
    with pytest.raises(ModelError, match="can run code when opened"):
        load_model(str(ckpt), device="cpu")


@pytest.mark.parametrize(
    "key, arch",
    [
        ("conditioner.embedders.1.model.ln_final.weight", "sdxl"),
        ("cond_stage_model.model.ln_final.weight", "sd2"),
        ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "sd15"),
    ],
)
def test_single_file_architecture_detection(tmp_path, key, arch):
    path = tmp_path / "ckpt.safetensors"
    save_file({key: torch.zeros(2), "model.diffusion_model.out.0.weight": torch.zeros(2)}, str(path))
    assert detect_checkpoint_arch(path) == arch


def test_unknown_single_file_is_refused(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.zeros(1)}, str(path))
    with pytest.raises(ModelError, match="does not look like an SD1.5, SD2.x or SDXL checkpoint"):
        detect_checkpoint_arch(path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 20)
    with pytest.raises(ModelError, match="broken.safetensors is damaged or not a safetensors file"):
        detect_checkpoint_arch(broken)


def test_single_file_needs_local_config_offline(tmp_path, monkeypatch, tiny_sdxl):
    """Offline and without the family's configuration files, a checkpoint gets a clear message, not a download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    path = save_ldm_checkpoint(tiny_sdxl.pipe, tmp_path / "model.safetensors")
    with pytest.raises(ModelError, match="SDXL checkpoint and needs that family's configuration files"):
        load_model(str(path), device="cpu")


def test_hub_id_not_in_cache(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="is not on this computer"):
        load_model("someone/some-model", device="cpu")


def _overflowing_vae(tiny_sdxl):
    vae = type(tiny_sdxl.pipe.vae).from_config(tiny_sdxl.pipe.vae.config)
    vae.load_state_dict(tiny_sdxl.pipe.vae.state_dict())
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(3e4)  # activations beyond float16's 65504 inside the decoder
    return vae


def test_half_precision_vae_does_not_overflow(tiny_sdxl):
    vae = _overflowing_vae(tiny_sdxl).to(torch.float16)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).half()
    with torch.no_grad():
        raw = vae.decode(latents / vae.config.scaling_factor).sample
    assert not torch.isfinite(raw).all()  # the problem is real in half precision
    vae.register_to_config(force_upcast=False)  # even a VAE that claims to be safe is caught
    images = decode_latents(vae, latents, tiny_sdxl.pipe.image_processor)
    assert images[0].size == (64, 64)
    assert vae.dtype == torch.float16  # put back after decoding
    assert np.asarray(images[0]).std() > 0


def test_preview_image():
    lat = torch.zeros(1, 4, 12, 16)
    lat[0, 0] = 1.0
    img = preview_image(lat, "sdxl")
    assert img.size == (16, 12) and img.mode == "RGB"
    r, g, b = img.getpixel((0, 0))
    assert r > 127 and g > 127  # latent channel 0 is mostly luminance


def test_png_carries_its_parameters(tmp_path):
    params = {"prompt": "a girl", "negative_prompt": "blurry", "seed": 42, "steps": 30, "guidance": 5.0,
              "width": 64, "height": 64, "model": "tiny", "scheduler": "ddim",
              "consistency": {"rate_coarse": 0.5}}
    path = save_png(Image.new("RGB", (8, 8), "red"), tmp_path / "p.png", params)
    assert read_png_parameters(path) == params
    with Image.open(path) as im:
        assert "Seed: 42" in im.text["parameters"] and "Negative prompt: blurry" in im.text["parameters"]
    assert not list(tmp_path.glob("*.part"))


def test_styles():
    names = style_names()
    assert len(names) == 9 and names[0] == "(No style)" and "Comic book" in names
    prompt, negative = get_style("comic BOOK").apply("a cat", "blurry")
    assert "a cat" in prompt and prompt != "a cat" and negative.startswith("blurry, ")
    assert get_style("(No style)").apply("a cat") == ("a cat", "")
    with pytest.raises(ValueError, match="Choose one of: \\(No style\\), Japanese Anime"):
        get_style("Vaporwave")


def test_model_folders_follow_the_platform(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    folders = model_folders()
    assert folders["Hugging Face cache"] == tmp_path / "hf"
    assert folders["StoryStudio models"].name == "models"


def test_memory_modes_are_checked_and_cpu_ignores_offload(tiny_model_dirs):
    from storystudio.engine.models.base import MEMORY_MODES

    assert set(MEMORY_MODES) == {"full", "model-offload", "sequential-offload"}
    with pytest.raises(ModelError, match='Unknown memory mode "half"'):
        load_model(str(tiny_model_dirs["sd15"]), device="cpu", memory="half")
    model = load_model(str(tiny_model_dirs["sd15"]), device="cpu", memory="model-offload")
    assert model.device.type == "cpu" and next(model.pipe.unet.parameters()).device.type == "cpu"


def test_a_vae_that_overflows_in_half_precision_decodes_in_bfloat16_on_gpus_that_have_it(monkeypatch):
    from storystudio.engine.imaging import wide_dtype

    assert wide_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert wide_dtype(torch.device("cuda")) == torch.bfloat16  # float32's range: no overflow
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert wide_dtype(torch.device("cuda")) == torch.float32


def test_an_upcast_vae_is_converted_once_for_all_pictures(tiny_sdxl, monkeypatch):
    vae = _overflowing_vae(tiny_sdxl).to(torch.float16)
    conversions = []
    original = type(vae).to
    monkeypatch.setattr(type(vae), "to", lambda self, *a, **k: conversions.append(a) or original(self, *a, **k))
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0)).half()
    images = decode_latents(vae, latents, tiny_sdxl.pipe.image_processor)
    assert len(images) == 3 and conversions == [(torch.float32,), (torch.float16,)]
