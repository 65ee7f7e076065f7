"""Models the user has: importing checkpoints and folders, listing them, removing them.

The single-file checkpoints are the tiny models written in the original
Stable Diffusion (LDM) layout (tests/ldm_checkpoint.py), so importing and
loading one runs through diffusers' real single-file converter.
"""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from hubserver import use_hub
from ldm_checkpoint import ldm_state_dict, save_ldm_checkpoint
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from storystudio.engine.models.downloads import DownloadCancelled
from storystudio.engine.models.library import import_model, installed_models, remove_model
from storystudio.engine.errors import ModelError
from storystudio.engine.models.base import model_folders
from storystudio.engine.models.checks import CHECKPOINT_PARTS
from storystudio.engine.models.loading import load_model


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    use_hub(monkeypatch, tmp_path)  # an empty Hugging Face cache and models folder, offline
    return model_folders()["StoryStudio models"]


@pytest.fixture(scope="module")
def sd15_checkpoint(tmp_path_factory, tiny_sd15):
    return save_ldm_checkpoint(tiny_sd15.pipe, tmp_path_factory.mktemp("ckpt") / "tiny sd15.safetensors")


def test_import_a_single_file_checkpoint_and_draw_with_it(models_dir, sd15_checkpoint, tiny_sd15, tiny_model_dirs):
    reports = []
    model = import_model(sd15_checkpoint, progress=reports.append)
    assert (model.source, model.arch, model.kind, model.owned) == ("imported", "sd15", "base-sd15", True)
    assert model.where == models_dir / "tiny sd15.safetensors" and model.where.read_bytes() == sd15_checkpoint.read_bytes()
    assert reports[-1].stage == "done" and reports[-1].bytes_done == model.size_bytes == sd15_checkpoint.stat().st_size
    assert not list(models_dir.glob("*.part"))
    assert import_model(sd15_checkpoint).where == model.where  # the same file again: no second copy
    assert len(list(models_dir.glob("*.safetensors"))) == 1
    assert [(m.source, m.arch) for m in installed_models()] == [("imported", "sd15")]
    assert [m.id for m in installed_models()] == [str(model.where)]

    loaded = load_model(model.load_id, device="cpu", config=str(tiny_model_dirs["sd15"]))
    for part in ("unet", "vae", "text_encoder"):  # the converter gave back exactly the tiny model's weights
        ours, theirs = getattr(loaded.pipe, part).state_dict(), getattr(tiny_sd15.pipe, part).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), part
    image = loaded.pipe("a lighthouse", num_inference_steps=2, height=64, width=64, output_type="np",
                        generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and image.std() > 0


def test_an_sdxl_checkpoint_is_recognised(models_dir, tiny_sdxl, tmp_path):
    # Loading it is not tried: diffusers tells SDXL's two text encoders apart by their widths, which the
    # tiny model's share. The real SD1.5 load above covers the converter path.
    path = save_ldm_checkpoint(tiny_sdxl.pipe, tmp_path / "xl.safetensors")
    model = import_model(path)
    assert (model.arch, model.kind) == ("sdxl", "base-sdxl")
    with safe_open(str(model.where), "pt") as f:
        assert "conditioner.embedders.1.model.text_projection" in f.keys()


@pytest.mark.parametrize("key, arch", [
    ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "sd15"),
    ("cond_stage_model.model.ln_final.weight", "sd2"),
    ("conditioner.embedders.1.model.ln_final.weight", "sdxl"),
])
def test_architecture_detection_on_import(models_dir, tmp_path, key, arch):
    path = tmp_path / f"{arch}.safetensors"
    parts = {f"{prefix}w": torch.zeros(2) for prefix in CHECKPOINT_PARTS[arch].values()}  # a whole model's parts
    save_file({key: torch.zeros(2), **parts}, str(path))
    assert import_model(path).arch == arch


def test_an_unknown_checkpoint_is_refused(models_dir, tmp_path):
    lora = tmp_path / "style-lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.zeros(1)}, str(lora))
    with pytest.raises(ModelError, match="style-lora.safetensors does not look like an SD1.5, SD2.x or SDXL checkpoint"):
        import_model(lora)
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(ModelError, match="notes.txt is not a model file StoryStudio knows"):
        import_model(tmp_path / "notes.txt")
    with pytest.raises(ModelError, match="does not exist"):
        import_model(tmp_path / "nothing.safetensors")
    assert not models_dir.exists() or not any(models_dir.iterdir())


def test_pickled_checkpoints_need_consent_and_are_converted(models_dir, tmp_path, tiny_sd15, tiny_model_dirs):
    state = ldm_state_dict(tiny_sd15.pipe)
    ckpt = tmp_path / "old.ckpt"
    torch.save({"state_dict": state, "global_step": 1234}, ckpt)
    with pytest.raises(ModelError, match="old.ckpt is a pickled checkpoint, which can run code when opened"):
        import_model(ckpt)
    assert not models_dir.exists() or not any(models_dir.iterdir())

    model = import_model(ckpt, allow_pickle=True)
    assert model.where == models_dir / "old.safetensors" and model.arch == "sd15"
    converted = load_file(str(model.where))
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[k], state[k]) for k in state)
    with safe_open(str(model.where), "pt") as f:
        assert f.metadata()["converted_from"] == "old.ckpt"
    assert load_model(str(model.where), device="cpu", config=str(tiny_model_dirs["sd15"])).arch == "sd15"


class _Sneaky:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_a_pickle_with_code_is_refused_even_with_consent(models_dir, tmp_path, capsys):
    ckpt = tmp_path / "sneaky.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Sneaky()}, ckpt)
    with pytest.raises(ModelError, match="sneaky.ckpt holds more than weights"):
        import_model(ckpt, allow_pickle=True)
    assert "this ran" not in capsys.readouterr().out
    plain = tmp_path / "plain.bin"
    plain.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelError, match="plain.bin"):
        import_model(plain, allow_pickle=True)
    assert not models_dir.exists() or not list(models_dir.glob("*.safetensors"))


def test_a_folder_is_used_where_it_is_and_never_deleted(models_dir, tmp_path, tiny_model_dirs):
    folder = tmp_path / "my-model"
    shutil.copytree(tiny_model_dirs["sd15"], folder)
    model = import_model(folder)
    assert (model.source, model.owned, model.arch, model.where) == ("linked", False, "sd15", folder)
    assert json.loads((models_dir / "linked-folders.json").read_text())["folders"] == [{"path": str(folder)}]
    assert [(m.source, m.id) for m in installed_models()] == [("linked", str(folder))]
    import_model(folder)  # added twice: listed once
    assert len(installed_models()) == 1
    files = sorted(p for p in folder.rglob("*"))
    assert remove_model(str(folder)) == 0
    assert sorted(p for p in folder.rglob("*")) == files  # forgotten, not deleted
    assert installed_models() == []


def test_a_folder_can_be_copied(models_dir, tmp_path, tiny_model_dirs):
    reports = []
    model = import_model(tiny_model_dirs["sd15"], copy=True, progress=reports.append)
    assert model.source == "imported" and model.where == models_dir / "sd15" and model.owned
    assert reports[-1].stage == "done" and reports[-1].bytes_done == model.size_bytes
    assert load_model(model.load_id, device="cpu").arch == "sd15"
    assert remove_model(model.id) == model.size_bytes
    assert not model.where.exists() and (tiny_model_dirs["sd15"] / "model_index.json").is_file()


def test_incomplete_and_foreign_folders_are_refused(models_dir, tmp_path, tiny_model_dirs):
    half = tmp_path / "half"
    shutil.copytree(tiny_model_dirs["sd15"], half)
    (half / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError, match="half is incomplete: it has no usable unet"):
        import_model(half)
    with pytest.raises(ModelError, match="is incomplete: it has no usable unet"):
        load_model(str(half), device="cpu")
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelError, match="holds a FluxPipeline model"):
        import_model(flux)
    with pytest.raises(ModelError, match="not a diffusers model folder"):
        import_model(tmp_path)
    assert installed_models() == []


def test_a_cancelled_copy_leaves_nothing(models_dir, sd15_checkpoint):
    with pytest.raises(DownloadCancelled):
        import_model(sd15_checkpoint, cancelled=lambda: True)
    assert not any(models_dir.iterdir())


def test_only_models_can_be_removed(models_dir, tmp_path, sd15_checkpoint):
    outside = tmp_path / "precious.safetensors"
    shutil.copy(sd15_checkpoint, outside)
    for name in (str(outside), str(tmp_path), "precious.safetensors", "nobody/nothing", ".."):
        with pytest.raises(ModelError, match="is not a model StoryStudio can remove"):
            remove_model(name)
    assert outside.is_file()
    model = import_model(outside)
    assert remove_model(model.where.name) == outside.stat().st_size  # by its name in the models folder
    assert outside.is_file() and not model.where.exists()
