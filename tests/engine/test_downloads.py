"""Downloads from a model hub stand-in on 127.0.0.1 (tests/hubserver.py), through the real huggingface_hub client.

Nothing reaches the network: every test points the Hugging Face cache, token,
StoryStudio's models folder and ``HF_ENDPOINT`` at temporary places
(``use_hub``). The served model is the tiny SD1.5 model of conftest.py.
"""

from __future__ import annotations

import shutil
import socket
import time

import huggingface_hub.constants
import pytest
from hubserver import FakeHub, catalog_item, use_hub, write_catalog

from storystudio.engine.models import downloads
from storystudio.engine.models.catalog import CatalogEntry, get_entry
from storystudio.engine.models.downloads import (
    CorruptDownloadError,
    DownloadCancelled,
    DownloadError,
    DownloadInterrupted,
    GatedModelError,
    OfflineError,
    download,
    installed,
    offline_reason,
    partial_bytes,
    snapshot_path,
)
from storystudio.engine.models.library import installed_models, remove_model
from storystudio.engine.errors import ModelError
from storystudio.engine.models.loading import load_model
from storystudio.engine.models.random_weights import build_pipeline

REPO = "tiny/sd15"
UNET = "unet/diffusion_pytorch_model.safetensors"
TOKEN = "hf_TestTokenThatMustNeverBeShown123"


@pytest.fixture
def hub(tiny_model_dirs):
    with FakeHub() as server:
        server.add_repo(REPO, tiny_model_dirs["sd15"])
        yield server


@pytest.fixture
def cache(hub, tmp_path, monkeypatch):
    return use_hub(monkeypatch, tmp_path, hub)


@pytest.fixture
def entry(hub, tmp_path, monkeypatch, cache) -> CatalogEntry:
    """The tiny model as the catalog entry "tiny" (every file of the repository)."""
    write_catalog(monkeypatch, tmp_path / "catalog.json", catalog_item(hub.repos[REPO], "tiny"))
    return get_entry("tiny")


def _storage(cache):
    return cache / "models--tiny--sd15"


def _assert_not_installed(entry, cache):
    assert not installed(entry) and snapshot_path(entry) is None
    snapshots = _storage(cache) / "snapshots"
    assert not snapshots.exists() or not any(p for p in snapshots.rglob("*") if not p.is_dir())
    assert [m for m in installed_models() if m.id == REPO] == []
    with pytest.raises(ModelError, match="not on this computer|only partly"):
        load_model(REPO, device="cpu")


def test_download_reports_progress_and_installs_in_the_cache(hub, entry, cache, tiny_model_dirs):
    repo = hub.repos[REPO]
    hub.throttle = 8e6  # about 0.8 s for the 6.5 MB model: several progress reports
    reports = []
    folder = download(entry, progress=reports.append)

    assert folder == _storage(cache) / "snapshots" / repo.commit and installed(entry)
    downloading = [p for p in reports if p.stage == "downloading"]
    assert len(downloading) >= 5
    done = [p.bytes_done for p in reports]
    assert done == sorted(done), "bytes done went backwards"
    assert {p.bytes_total for p in downloading} == {repo.size}
    assert reports[-1].stage == "done" and reports[-1].bytes_done == repo.size == reports[-1].bytes_total
    assert reports[-1].files_done == reports[-1].files_total == len(repo.files)
    assert any(p.bytes_per_second > 1e5 and p.seconds_left is not None for p in downloading)
    assert hub.body_bytes() == repo.size  # every file fetched once, nothing twice
    # the standard cache layout: links to blobs named by checksum, and refs/main
    for path, f in repo.files.items():
        local = folder / path
        assert local.is_symlink() and local.resolve() == _storage(cache) / "blobs" / f.etag
        assert local.read_bytes() == (tiny_model_dirs["sd15"] / path).read_bytes()
    assert (_storage(cache) / "refs" / "main").read_text() == repo.commit
    assert not list(_storage(cache).rglob("*.incomplete"))
    # what the rest of StoryStudio sees
    assert [(m.id, m.source, m.state) for m in installed_models()] == [("tiny", "catalog", "installed")]
    model = load_model("tiny", device="cpu")  # by catalog id
    assert model.arch == "sd15" and load_model(REPO, device="cpu").arch == "sd15"


def test_an_installed_model_makes_no_request(hub, entry, cache, tiny_model_dirs, monkeypatch):
    """A cache another tool filled (plain files, no links) is used as it is: no request at all."""
    snapshot = _storage(cache) / "snapshots" / ("ab" * 20)
    shutil.copytree(tiny_model_dirs["sd15"], snapshot)
    (_storage(cache) / "refs").mkdir()
    (_storage(cache) / "refs" / "main").write_text("ab" * 20)
    reports = []
    assert download(entry, progress=reports.append) == snapshot
    assert hub.log == []
    assert reports[-1].stage == "done" and reports[-1].bytes_done == hub.repos[REPO].size
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # offline makes no difference
    assert download(entry, endpoint="http://127.0.0.1:9") == snapshot
    assert hub.log == []


def test_an_interrupted_download_continues_where_it_stopped(hub, entry, cache):
    repo = hub.repos[REPO]
    unet = len(repo.files[UNET].data)
    hub.drop_after[UNET] = 2_000_000
    with pytest.raises(DownloadInterrupted, match="connection to the model hub broke.*continues from there"):
        download(entry, retries=0)
    _assert_not_installed(entry, cache)
    part = _storage(cache) / "blobs" / f"{repo.files[UNET].etag}.incomplete"
    kept = part.stat().st_size
    finished = sum(len(f.data) for p, f in repo.files.items() if p < UNET)  # the files fetched before it
    assert 0 < kept <= 2_000_000 and partial_bytes(entry) == kept + finished
    assert [(m.id, m.state) for m in installed_models()] == [("tiny", "partial")]
    first = hub.body_bytes()

    hub.clear_log()
    reports = []
    download(entry, progress=reports.append)
    assert installed(entry)
    gets = hub.requests("GET", UNET)
    assert [(r.status, r.range_start) for r in gets] == [(206, kept)]
    assert hub.body_bytes(UNET) == unet - kept  # only the rest of the interrupted file
    before_unet = [p for p in repo.files if p < UNET]  # files done in the first attempt are not fetched again
    assert all(hub.body_bytes(p) == 0 for p in before_unet)
    assert first + hub.body_bytes() == repo.size + (2_000_000 - kept)
    assert reports[0].stage == "checking"
    assert [p for p in reports if p.stage == "downloading"][0].resumed_bytes >= kept


def test_a_dropped_connection_is_resumed_during_the_download(hub, entry, cache):
    repo = hub.repos[REPO]
    hub.drop_after[UNET] = 1_500_000
    download(entry)
    assert installed(entry)
    assert [(r.status, r.range_start) for r in hub.requests("GET", UNET)] == [(200, 0), (206, 1_500_000)]
    assert hub.body_bytes() == repo.size


def test_cancel_leaves_nothing_that_looks_installed(hub, entry, cache):
    hub.throttle = 4e6
    seen = []

    def cancelled() -> bool:
        return bool(seen) and seen[-1].bytes_done > 1_000_000

    started = time.monotonic()
    with pytest.raises(DownloadCancelled, match="stopped.*continues from there"):
        download(entry, progress=seen.append, cancelled=cancelled)
    assert time.monotonic() - started < 5
    _assert_not_installed(entry, cache)
    assert [(m.id, m.state) for m in installed_models()] == [("tiny", "partial")]
    assert remove_model("tiny") > 0  # an unfinished download can be thrown away
    assert partial_bytes(entry) == 0 and not _storage(cache).exists()
    assert installed_models() == []


def test_cancel_before_the_first_request(hub, entry, cache):
    with pytest.raises(DownloadCancelled):
        download(entry, cancelled=lambda: True)
    assert hub.log == [] and not installed(entry)


@pytest.mark.parametrize("fault", ["checksum", "size"])
def test_a_damaged_file_is_detected_and_deleted(hub, entry, cache, fault):
    repo = hub.repos[REPO]
    if fault == "checksum":
        hub.corrupt.add(UNET)
        expected = "arrived damaged \\(its checksum is not the one the model hub gives\\)"
    else:
        hub.announce_size[UNET] = len(repo.files[UNET].data) + 100
        expected = "arrived with [0-9,]+ bytes instead of the [0-9,]+ the model hub announced"
    with pytest.raises(CorruptDownloadError, match=f"{UNET} of Tiny tiny {expected}.*deleted. Try the download again"):
        download(entry)
    _assert_not_installed(entry, cache)
    assert not list(_storage(cache).rglob("*.incomplete"))
    hub.corrupt.clear()
    hub.announce_size.clear()
    download(entry)  # the next attempt fetches a good copy
    assert installed(entry)


def test_gated_repositories_need_a_token(hub, tmp_path, monkeypatch, cache, tiny_model_dirs):
    gated = hub.add_repo("tiny/gated", tiny_model_dirs["sd15"], token=TOKEN)
    write_catalog(monkeypatch, tmp_path / "catalog.json", catalog_item(gated, "gated"))
    messages = []
    with pytest.raises(GatedModelError, match="is a gated model: accept its licence at "
                       "https://huggingface.co/tiny/gated .* access token") as no_token:
        download("gated")
    messages.append(str(no_token.value))
    with pytest.raises(GatedModelError, match="access token was refused") as wrong:
        download("gated", token="hf_wrong")
    messages.append(str(wrong.value))
    assert not installed("gated")
    reports = []
    download("gated", token=TOKEN, progress=reports.append)
    assert installed("gated")
    assert all(r.authorized for r in hub.requests(path=None) if "/resolve/" in r.path and r.status == 200)
    assert not any(TOKEN in m for m in messages + [repr(r) for r in reports])


def test_offline_mode_and_an_unreachable_hub_are_explained(hub, entry, cache, monkeypatch):
    assert offline_reason() is None
    hub.clear_log()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match="Downloads are switched off on this computer \\(the HF_HUB_OFFLINE"):
        download(entry)
    assert "HF_HUB_OFFLINE" in offline_reason()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # switched on while the app runs
    with pytest.raises(OfflineError, match="switched off"):
        download(entry)
    assert hub.log == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(OfflineError, match="The model hub \\(127.0.0.1:[0-9]+\\) cannot be reached: this computer "
                       "seems to be offline"):
        download(entry, endpoint=dead)
    assert time.monotonic() - started < 5
    assert "cannot be reached" in offline_reason(dead)
    assert not installed(entry)


def test_a_busy_server_is_retried_then_reported(hub, entry, cache):
    hub.fail[UNET] = 503
    with pytest.raises(DownloadError, match="kept failing \\(HTTP error 503\\) while sending " + UNET):
        download(entry, retries=1)
    assert len(hub.requests("GET", UNET)) == 2
    del hub.fail[UNET]
    download(entry)
    assert installed(entry)


def test_not_enough_disk_space(hub, entry, cache, monkeypatch):
    usage = shutil.disk_usage(cache.parent)
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(DownloadError, match="needs 6.6 MB of free disk space .* but only 0.0 MB are free"):
        download(entry)
    assert hub.body_bytes() == 0


def test_a_file_the_repository_lacks(hub, tmp_path, monkeypatch, cache):
    repo = hub.repos[REPO]
    write_catalog(monkeypatch, tmp_path / "catalog.json",
                  catalog_item(repo, "broken", files=list(repo.files) + ["unet/missing.safetensors"]))
    with pytest.raises(DownloadError, match="has no file unet/missing.safetensors; the catalog entry broken needs"):
        download("broken")
    assert hub.body_bytes() == 0


def test_variant_files_and_their_full_precision_fallback(hub, tmp_path, monkeypatch, cache):
    """The catalog names fp16 files; a repository without them gets its full-precision files fetched,
    and a repository with them is loaded with the right variant."""
    fp16 = tmp_path / "fp16"
    build_pipeline("sd15").save_pretrained(fp16, safe_serialization=True, variant="fp16")
    variant_repo = hub.add_repo("tiny/sd15-fp16", fp16)
    plain = hub.repos[REPO]
    names = [p.replace("model.safetensors", "model.fp16.safetensors") for p in plain.files]
    assert set(names) == set(variant_repo.files)
    write_catalog(monkeypatch, tmp_path / "catalog.json",
                  catalog_item(plain, "plain", files=names, variant="fp16"),
                  catalog_item(variant_repo, "halves", files=names, variant="fp16"))
    download("plain")
    folder = snapshot_path("plain")
    assert (folder / UNET).is_file() and not (folder / UNET.replace(".safetensors", ".fp16.safetensors")).exists()
    download("halves")
    assert (snapshot_path("halves") / "unet/diffusion_pytorch_model.fp16.safetensors").is_file()
    model = load_model("halves", device="cpu")
    image = model.pipe("a cat", num_inference_steps=2, height=64, width=64, output_type="np",
                       generator=__import__("torch").Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and image.std() > 0


def test_catalog_ids_load_once_downloaded(hub, entry, tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="Tiny tiny is not downloaded yet; download it first "
                       "\\(storystudio models download tiny\\)"):
        load_model("tiny", device="cpu")
    write_catalog(monkeypatch, tmp_path / "catalog.json",
                  catalog_item(hub.repos[REPO], "motion", kind="motion-adapter", good_for=["video"]))
    with pytest.raises(ModelError, match="is a part of the animatic's video stage, not a picture model"):
        load_model("motion", device="cpu")


def test_removing_downloaded_models(hub, tmp_path, monkeypatch, cache, tiny_model_dirs):
    """Two catalog models in one repository (as the IP-Adapter and its image encoder are): removing one
    keeps the other; removing the last removes the repository from the cache."""
    repo = hub.repos[REPO]
    unet_part = [p for p in repo.files if p.startswith("unet/")]
    rest = [p for p in repo.files if p not in unet_part]
    write_catalog(monkeypatch, tmp_path / "catalog.json", catalog_item(repo, "part-a", files=unet_part),
                  catalog_item(repo, "part-b", files=rest))
    download("part-a")
    download("part-b")
    assert {m.id for m in installed_models()} == {"part-a", "part-b"}
    freed = remove_model("part-a")
    assert freed == sum(len(repo.files[p].data) for p in unet_part)
    assert not installed("part-a") and installed("part-b")
    assert remove_model("part-b") > 0
    assert not _storage(cache).exists() and installed_models() == []
    with pytest.raises(ModelError, match="is not on this computer"):
        remove_model("part-b")
    with pytest.raises(ModelError, match="is not a model StoryStudio can remove"):
        remove_model("no/such-model")
