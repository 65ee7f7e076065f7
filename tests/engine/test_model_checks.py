"""Damaged model files and folders: one plain sentence each, from loading, importing and the command line.

Each case damages a copy of the tiny SD1.5 folder (or writes a bad single file) the way a cut-off
download, a hand-edited configuration or a wrong file does.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from hubserver import use_hub
from ldm_checkpoint import save_ldm_checkpoint
from safetensors.torch import save_file

from cli_helpers import assert_plain_error, cli
from storystudio.engine.errors import ModelError
from storystudio.engine.models.checks import CHECKPOINT_PARTS, check_checkpoint, safetensors_header
from storystudio.engine.models.library import import_model, installed_models
from storystudio.engine.models.loading import load_model

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def _index(folder, change):
    data = json.loads((folder / "model_index.json").read_text())
    change(data)
    (folder / "model_index.json").write_text(json.dumps(data))


def _json(folder, name, text):
    (folder / name).write_text(text)


def _cut(folder, name, keep):
    file = folder / name
    file.write_bytes(file.read_bytes()[: keep(file.stat().st_size)])


def _header(folder, name, header: dict, data: bytes = b""):
    raw = json.dumps(header).encode()
    (folder / name).write_bytes(struct.pack("<Q", len(raw)) + raw + data)


FOLDER_DAMAGE = {
    "index not json": (lambda f: _json(f, "model_index.json", "{not json"), "model_index.json", "not readable JSON"),
    "index a list": (lambda f: _json(f, "model_index.json", "[1, 2]"), "model_index.json", "named settings"),
    "index deep": (lambda f: _json(f, "model_index.json", "[" * 100_000 + "]" * 100_000), "model_index.json",
                   "not readable JSON"),
    "class a list": (lambda f: _index(f, lambda d: d.update(_class_name=["StableDiffusionPipeline"])),
                     "an unknown model", "Stable Diffusion 1.5/2.x and SDXL"),
    "class a number": (lambda f: _index(f, lambda d: d.update(_class_name=12)), "an unknown model", "SDXL"),
    "class missing": (lambda f: _index(f, lambda d: d.pop("_class_name")), "an unknown model", "SDXL"),
    "class huge": (lambda f: _index(f, lambda d: d.update(_class_name="X" * 100_000)), "a XXXXXXXX", "SDXL"),
    "part spec wrong": (lambda f: _index(f, lambda d: d.update(unet=["diffusers"])), '"unet" wrongly', "[library, class]"),
    "part spec numbers": (lambda f: _index(f, lambda d: d.update(vae=[1, 2])), '"vae" wrongly', "[library, class]"),
    "part missing": (lambda f: shutil.rmtree(f / "unet"), "is incomplete", "no usable unet"),
    "config not json": (lambda f: _json(f, "unet/config.json", "{"), "unet's config.json", "not readable JSON"),
    "config a list": (lambda f: _json(f, "vae/config.json", "[]"), "vae's config.json", "named settings"),
    "config huge": (lambda f: _json(f, "unet/config.json", " " * (5 * 1024**2) + "{}"), "unet's config.json",
                    "far too large"),
    "scheduler not json": (lambda f: _json(f, "scheduler/scheduler_config.json", "nope"), "scheduler", "not readable"),
    "vocab not json": (lambda f: _json(f, "tokenizer/vocab.json", "{"), "tokenizer's vocab.json", "not readable"),
    "weights cut in half": (lambda f: _cut(f, UNET_WEIGHTS, lambda n: n // 2), "cut short or damaged",
                            "download or copy it again"),
    "weights 104 bytes": (lambda f: _cut(f, UNET_WEIGHTS, lambda n: 104), "damaged or not a safetensors file", "header"),
    "weights empty": (lambda f: _cut(f, UNET_WEIGHTS, lambda n: 0), "not a safetensors file", "0 bytes"),
    "weights header lies": (lambda f: (f / UNET_WEIGHTS).write_bytes(struct.pack("<Q", 2**62) + b"{}"),
                            "damaged or not a safetensors file", "header"),
    "weights wrong dtype": (lambda f: _header(f, UNET_WEIGHTS, {"w": {"dtype": "F99", "shape": [1],
                                                                      "data_offsets": [0, 4]}}, b"\0" * 4),
                            '"w" is described wrongly', "unet"),
    "weights overlap": (lambda f: _header(f, UNET_WEIGHTS, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                                          b"\0" * 12), "two of its tensors overlap", "unet"),
    "weights wrong size": (lambda f: _header(f, UNET_WEIGHTS, {"a": {"dtype": "F32", "shape": [3],
                                                                      "data_offsets": [0, 8]}}, b"\0" * 8),
                           "wrong number of bytes", "unet"),
}


@pytest.fixture
def damaged(tmp_path, tiny_model_dirs):
    def make(case: str):
        folder = tmp_path / case.replace(" ", "-")
        shutil.copytree(tiny_model_dirs["sd15"], folder)
        FOLDER_DAMAGE[case][0](folder)
        return folder

    return make


@pytest.mark.parametrize("case", list(FOLDER_DAMAGE))
def test_a_damaged_folder_gets_one_sentence_from_loading_and_importing(case, damaged, tmp_path, monkeypatch):
    use_hub(monkeypatch, tmp_path)
    folder = damaged(case)
    _, *fragments = FOLDER_DAMAGE[case]
    for attempt in (lambda: load_model(str(folder), device="cpu"), lambda: import_model(folder)):
        with pytest.raises(ModelError) as info:
            attempt()
        message = str(info.value)
        assert all(fragment in message for fragment in fragments), (fragments, message)
        assert "\n" not in message and len(message) < 400 and message.endswith("."), message
    assert installed_models() == []  # nothing was added


@pytest.mark.parametrize("case", ["class a list", "weights cut in half", "config not json"])
def test_the_command_line_says_it_in_one_line(case, damaged, tmp_path, monkeypatch, small_story):
    use_hub(monkeypatch, tmp_path)
    folder = damaged(case)
    script = tmp_path / "s.story.txt"
    script.write_text("[NC] fog\n", encoding="utf-8")
    for run in (cli("models", "import", folder),
                cli("render", script, "--out", tmp_path / "out", "--model", folder, "--steps", "1", "--size",
                    "64x64", "--device", "cpu")):
        assert_plain_error(run, FOLDER_DAMAGE[case][1])
        assert len([line for line in run.err.splitlines() if line.startswith("storystudio")]) == 1
    assert not (tmp_path / "out").exists()


def test_a_folder_whose_weights_do_not_fit_its_configuration_is_not_imported(tmp_path, tiny_model_dirs, monkeypatch):
    """Every file is sound, but the UNet's configuration describes another network: import refuses it (after
    building the UNet without weights), and loading says so in one sentence instead of diffusers' page."""
    use_hub(monkeypatch, tmp_path)
    folder = tmp_path / "mismatched"
    shutil.copytree(tiny_model_dirs["sd15"], folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    config["block_out_channels"] = [2 * c for c in config["block_out_channels"]]
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"the unet's weights do not fit its configuration \(\"") as info:
        import_model(folder)
    assert len(str(info.value)) < 400
    with pytest.raises(ModelError, match="could not be loaded; its files do not fit together") as info:
        load_model(str(folder), device="cpu")
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    assert installed_models() == []


def test_a_sound_folder_is_imported_and_loads(tmp_path, tiny_model_dirs, monkeypatch):
    use_hub(monkeypatch, tmp_path)
    model = import_model(tiny_model_dirs["sdxl"])
    assert (model.source, model.arch) == ("linked", "sdxl")
    assert load_model(model.load_id, device="cpu").arch == "sdxl"


def _keys(arch: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}w": torch.zeros(2) for prefix in CHECKPOINT_PARTS[arch].values()}


@pytest.mark.parametrize("arch", list(CHECKPOINT_PARTS))
def test_a_single_file_needs_every_part_of_its_family(arch, tmp_path):
    whole = tmp_path / f"{arch}.safetensors"
    save_file(_keys(arch), str(whole))
    assert check_checkpoint(whole) == arch
    for part, prefix in CHECKPOINT_PARTS[arch].items():
        partial = tmp_path / f"{arch}-without-{part.replace(' ', '-')}.safetensors"
        save_file({k: v for k, v in _keys(arch).items() if not k.startswith(prefix)}, str(partial))
        with pytest.raises(ModelError) as info:
            check_checkpoint(partial)
        # without the tensors that tell the family apart it is no known checkpoint at all
        assert f"has no {part}" in str(info.value) or "does not look like an SD1.5, SD2.x or SDXL" in str(info.value)


def test_a_tiny_or_cut_single_file_is_not_imported(tmp_path, monkeypatch, tiny_sd15):
    use_hub(monkeypatch, tmp_path)
    lone = tmp_path / "lone.safetensors"  # 104 bytes: one text encoder tensor, as the issue found
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(2)}, str(lone))
    assert lone.stat().st_size < 200
    with pytest.raises(ModelError, match="has no UNet and no VAE; it is not a whole model"):
        import_model(lone)
    whole = save_ldm_checkpoint(tiny_sd15.pipe, tmp_path / "whole.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size - 1000])
    with pytest.raises(ModelError, match="cut short or damaged"):
        import_model(cut)
    assert safetensors_header(whole) and import_model(whole).arch == "sd15"
    assert [(m.source, m.name) for m in installed_models()] == [("imported", "whole.safetensors")]
