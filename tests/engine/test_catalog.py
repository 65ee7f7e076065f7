"""The model catalog: its data, extra catalogs, and the model recommended for a GPU."""

from __future__ import annotations

import json

import pytest
import torch

from storystudio.engine.models import catalog as catalog_module
from storystudio.engine.models.catalog import (
    KINDS,
    PURPOSES,
    CatalogEntry,
    CatalogError,
    catalog,
    detect_gpu_memory_gb,
    get_entry,
    recommend,
)
from storystudio.engine.models.random_weights import (
    IP_ADAPTER_WEIGHTS,
    IP_IMAGE_ENCODER,
    PHOTO_ADAPTER_WEIGHTS,
    build_pipeline,
)
from storystudio.engine.story.photos import CATALOG_IDS, FACE_ADAPTERS

REQUIRED_REPOS = {
    "stabilityai/stable-diffusion-xl-base-1.0": "base-sdxl",
    "SG161222/RealVisXL_V4.0": "base-sdxl",
    "cagliostrolab/animagine-xl-3.1": "base-sdxl",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "base-sd15",
    "guoyww/animatediff-motion-adapter-v1-5-3": "motion-adapter",
    "guoyww/animatediff-sparsectrl-rgb": "sparsectrl",
    "thibaud/controlnet-openpose-sdxl-1.0": "controlnet-sdxl",
    "lllyasviel/control_v11p_sd15_openpose": "controlnet-sd15",
}
TOKENIZER_FILES = {"merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"}


@pytest.fixture(autouse=True)
def bundled_only(monkeypatch):
    monkeypatch.delenv("STORYSTUDIO_MODEL_CATALOG", raising=False)


def test_the_bundled_catalog():
    entries = catalog()
    assert len({e.id for e in entries}) == len(entries)
    kinds = {e.repo: e.kind for e in entries}
    for repo, kind in REQUIRED_REPOS.items():
        assert kinds.get(repo) == kind, repo
    for e in entries:
        assert e.kind in KINDS and e.licence and e.size_bytes > 0 and e.gpu_memory_gb > 0 and e.description
        assert set(e.good_for) <= set(PURPOSES) and e.good_for
        assert not e.gated  # none of these needs a licence accepted on the Hub; the mechanism is tested with a token
    ip = {e.id: e for e in entries if e.repo == "h94/IP-Adapter"}
    assert ip["ip-adapter-sd15"].files == (IP_ADAPTER_WEIGHTS,)  # the layout the video stage loads
    assert set(ip["ip-adapter-image-encoder"].files) == {f"{IP_IMAGE_ENCODER}/config.json",
                                                         f"{IP_IMAGE_ENCODER}/model.safetensors"}
    for arch, (repo, weights, encoder) in FACE_ADAPTERS.items():  # what reference photos load
        adapter_id, encoder_id = CATALOG_IDS[arch]
        assert (ip[adapter_id].repo, ip[adapter_id].files, ip[adapter_id].kind) == (repo, (weights,), "ip-adapter")
        assert f"{encoder}/config.json" in ip[encoder_id].files and ip[encoder_id].kind == "image-encoder"
        assert weights == PHOTO_ADAPTER_WEIGHTS[arch]  # the tiny test adapter is laid out the same
    purposes = {p for e in entries if e.is_base for p in e.good_for}
    assert {"comic", "anime", "realistic", "low-memory", "cpu"} <= purposes


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_base_models_name_the_files_diffusers_writes(tmp_path, arch):
    """Every weight and configuration file a base entry names is one diffusers writes for that architecture
    with the fp16 variant (the tokenizer files are the Hub repositories' own, older format)."""
    build_pipeline(arch).save_pretrained(tmp_path, safe_serialization=True, variant="fp16")
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    wanted_parts = {p.split("/")[0] for p in written if "/" in p}
    for entry in (e for e in catalog() if e.arch == arch):
        named = {f for f in entry.files if f.rsplit("/", 1)[-1] not in TOKENIZER_FILES}
        assert named == {f for f in written if not f.startswith("tokenizer")}, entry.id
        assert {f.split("/")[0] for f in entry.files if "/" in f} == wanted_parts, entry.id
        for folder in (p for p in wanted_parts if p.startswith("tokenizer")):
            assert {f"{folder}/{name}" for name in TOKENIZER_FILES} <= set(entry.files)


def test_variant_files_fall_back_to_full_precision():
    entry = get_entry("sdxl-base")
    assert entry.variant == "fp16" and entry.arch == "sdxl" and entry.is_base
    assert entry.file_choices("unet/diffusion_pytorch_model.fp16.safetensors") == (
        "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors")
    assert entry.file_choices("unet/config.json") == ("unet/config.json",)
    assert get_entry("stabilityai/stable-diffusion-xl-base-1.0") is entry  # found by repository too
    with pytest.raises(CatalogError, match='"nope" is not in the model catalog; choose one of: sdxl-base'):
        get_entry("nope")


@pytest.mark.parametrize("memory, purpose, expected", [
    (None, None, "sd15"),  # no GPU: the model that runs on the CPU
    (2, None, "sd15"),  # nothing fits: the smallest
    (6, None, "sd15"),
    (8, "anime", "sd15"),
    (12, None, "sdxl-base"),
    (24, "anime", "animagine-xl-3.1"),
    (24, "comic", "sdxl-base"),
    (24, "realistic", "realvisxl-4"),
    (80, "cpu", "sd15"),
])
def test_recommend(memory, purpose, expected):
    assert recommend(memory, purpose).id == expected


def test_recommend_refuses_an_unknown_purpose():
    with pytest.raises(CatalogError, match='"vaporwave" is not a purpose StoryStudio knows'):
        recommend(12, "vaporwave")


def test_detect_gpu_memory_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert detect_gpu_memory_gb() is None


def _write(path, *models):
    path.write_text(json.dumps({"format": "storystudio-models/1", "models": list(models)}), encoding="utf-8")
    return path


ITEM = dict(id="mine", name="Mine", kind="base-sd15", repo="me/mine", files=["model_index.json"], size_bytes=10,
            licence="MIT", good_for=["general"], gpu_memory_gb=4)


def test_an_extra_catalog_adds_and_replaces_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYSTUDIO_MODEL_CATALOG", str(_write(tmp_path / "c.json", ITEM,
                                                                dict(ITEM, id="sd15", name="My SD1.5"))))
    ids = [e.id for e in catalog()]
    assert ids[-2:] == ["mine", "sd15"] and ids.count("sd15") == 1
    assert get_entry("sd15").name == "My SD1.5" and get_entry("mine").repo == "me/mine"
    monkeypatch.setenv("STORYSTUDIO_MODEL_CATALOG", str(tmp_path / "missing.json"))
    with pytest.raises(CatalogError, match="missing.json named by STORYSTUDIO_MODEL_CATALOG does not exist"):
        catalog()


@pytest.mark.parametrize("change, message", [
    (dict(files=["unet/*.safetensors"]), "name each file exactly, without patterns"),
    (dict(files=["../escape.json"]), "name each file exactly"),
    (dict(kind="lora"), "has the unknown kind 'lora'"),
    (dict(repo="no-owner"), "write it as owner/name"),
    (dict(id="two words"), "is not a usable id"),
    (dict(good_for=["vaporwave"]), "is good for vaporwave"),
    (dict(size_bytes="big"), "is incomplete or malformed"),
])
def test_a_malformed_catalog_gets_a_plain_message(tmp_path, monkeypatch, change, message):
    monkeypatch.setenv("STORYSTUDIO_MODEL_CATALOG", str(_write(tmp_path / "c.json", dict(ITEM, **change))))
    with pytest.raises(CatalogError, match=message):
        catalog()


def test_a_file_that_is_no_catalog(tmp_path, monkeypatch):
    (tmp_path / "c.json").write_text('{"models": "no"}', encoding="utf-8")
    monkeypatch.setenv("STORYSTUDIO_MODEL_CATALOG", str(tmp_path / "c.json"))
    with pytest.raises(CatalogError, match="is not a StoryStudio model catalog"):
        catalog()
    (tmp_path / "c.json").write_text("{", encoding="utf-8")
    catalog_module._load.cache_clear()
    with pytest.raises(CatalogError, match="is not valid JSON"):
        catalog()


def test_entries_are_plain_data():
    entry = CatalogEntry.from_dict(dict(ITEM, variant="fp16"))
    assert entry.arch == "sd15" and entry.revision == "main" and entry.variant == "fp16" and not entry.gated
