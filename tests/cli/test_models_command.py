"""``storystudio models``: create-tiny, path, list, download (against the hub stand-in), import, remove."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import threading
import time
from contextlib import redirect_stderr, redirect_stdout

import huggingface_hub.constants
import pytest
from hubserver import FakeHub, catalog_item, use_hub, write_catalog
from safetensors.torch import save_file

from cli_helpers import SNAPSHOT, Run, assert_plain_error, cli, point_hf_cache  # noqa: F401
from storystudio.cli import main
from storystudio.engine.models.base import model_folders

# ---- models create-tiny ---------------------------------------------------------------------
def test_models_create_tiny_writes_a_diffusers_folder(tmp_path):
    folder = tmp_path / "tiny15"
    run = cli("models", "create-tiny", folder, "--arch", "sd15")
    assert run.rc == 0, run.err
    assert str(folder) in run.out and "sd15" in run.out
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder"):
        assert (folder / part / "config.json").is_file(), part
        weights = list((folder / part).glob("*.safetensors"))
        assert weights and all(w.stat().st_size > 0 for w in weights), part
    assert any((folder / "tokenizer").iterdir())
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")), "weights must be safetensors only"


def test_models_create_tiny_refuses_a_non_empty_folder(tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    run = cli("models", "create-tiny", folder, "--arch", "sd15")
    assert run.rc == 2
    assert run.err.count("\n") == 1 and run.err.startswith("storystudio: "), run.err
    assert "not empty" in run.err and "Traceback" not in run.err
    assert run.out == ""
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_models_path_prints_both_folders(tmp_path, monkeypatch):
    point_hf_cache(monkeypatch, tmp_path / "cache", tmp_path)
    run = cli("models", "path")
    assert run.rc == 0, run.err
    lines = run.out.splitlines()
    assert f"Hugging Face cache: {tmp_path / 'cache'}" in lines
    own = [line for line in lines if line.startswith("StoryStudio models: ")]
    assert own and own[0].endswith(str(model_folders()["StoryStudio models"]))
    assert str(tmp_path / "data") in own[0]


def test_models_list_finds_a_cached_hub_model(hf_cache, tmp_path, monkeypatch):
    point_hf_cache(monkeypatch, hf_cache, tmp_path)
    run = cli("models", "list")
    assert run.rc == 0, run.err
    rows = [line.split("\t") for line in run.out.splitlines() if "\t" in line]
    assert [(r[0], r[1]) for r in rows] == [("tiny/sd15", "sd15")], run.out
    assert rows[0][3] == str(hf_cache / "models--tiny--sd15" / "snapshots" / SNAPSHOT)


def test_models_list_with_an_empty_cache(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()
    point_hf_cache(monkeypatch, tmp_path / "cache", tmp_path)
    run = cli("models", "list")
    assert run.rc == 0, run.err
    assert "No Stable Diffusion models were found" in run.out


HUB_TOKEN = "hf_CliTestTokenNeverShown42"


@pytest.fixture
def fake_hub(tiny_model_dirs, tmp_path, monkeypatch):
    """The tiny sd15 model served as "tiny/sd15" (catalog id tiny-sd15) and, gated, as "tiny/gated" (tiny-gated)."""
    with FakeHub() as hub:
        repo = hub.add_repo("tiny/sd15", tiny_model_dirs["sd15"])
        gated = hub.add_repo("tiny/gated", tiny_model_dirs["sd15"], token=HUB_TOKEN)
        use_hub(monkeypatch, tmp_path, hub)
        write_catalog(monkeypatch, tmp_path / "catalog.json", catalog_item(repo, "tiny-sd15"),
                      catalog_item(gated, "tiny-gated"))
        yield hub


def _catalog_line(run: Run, model_id: str) -> str:
    return next(line for line in run.out.splitlines() if line.split()[:1] == [model_id])


def test_models_download_list_and_remove(fake_hub):
    run = cli("models", "download", "tiny-sd15")
    assert run.rc == 0, run.err
    assert "Downloading Tiny tiny-sd15 (tiny/sd15, 6.6 MB) ..." in run.err
    assert "Fetched 6.6 MB in " in run.err and "MB/s" in run.err
    assert run.out.startswith("Tiny tiny-sd15 is installed in ") and "models--tiny--sd15" in run.out

    listing = cli("models", "list")
    assert listing.rc == 0, listing.err
    assert _catalog_line(listing, "tiny-sd15").split()[1:3] == ["installed", "6.6"]
    assert _catalog_line(listing, "tiny-gated").split()[1:3] == ["not", "downloaded"]
    assert _catalog_line(listing, "sdxl-base").split()[1:5] == ["not", "downloaded", "~6.9", "GB"]
    assert not [line for line in listing.out.splitlines() if "\t" in line]  # not listed a second time
    assert "Disk use: 6.6 MB in the Hugging Face cache" in listing.out

    fake_hub.clear_log()
    again = cli("models", "download", "tiny-sd15")
    assert again.rc == 0 and "is installed in" in again.out and fake_hub.log == []

    removed = cli("models", "remove", "tiny-sd15")
    assert removed.rc == 0, removed.err
    assert removed.out.strip() == "Removed tiny-sd15 (6.6 MB freed)."
    assert _catalog_line(cli("models", "list"), "tiny-sd15").split()[1:3] == ["not", "downloaded"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_models_download_draws_a_progress_bar_on_a_terminal(fake_hub):
    fake_hub.throttle = 10e6
    err = _Terminal()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["models", "download", "tiny-sd15"]) == 0
    bars = [part for part in err.getvalue().split("\r") if part.startswith("[")]
    assert len(bars) >= 3
    assert any("MB/s" in bar and " left" in bar and " / 6.6 MB" in bar for bar in bars), bars
    assert bars[-1].startswith("[" + "#" * 24 + "] 6.6 MB / 6.6 MB")


def test_models_download_of_a_gated_model_reads_the_token_file(fake_hub, tmp_path):
    run = cli("models", "download", "tiny-gated")
    assert_plain_error(run, "is a gated model: accept its licence at https://huggingface.co/tiny/gated",
                       "access token")
    token_file = tmp_path / "token.txt"
    token_file.write_text(HUB_TOKEN + "\n", encoding="utf-8")
    run = cli("models", "download", "tiny-gated", "--token-file", token_file)
    assert run.rc == 0, run.err
    assert HUB_TOKEN not in run.out + run.err
    assert_plain_error(cli("models", "download", "tiny-gated", "--token-file", tmp_path / "none.txt"),
                       "the token file", "cannot be read")


def test_a_wrong_token_in_hf_token_is_named_as_refused(fake_hub, monkeypatch):
    """Without --token-file the client sends $HF_TOKEN: a refusal is about that token, not a missing one."""
    monkeypatch.setenv("HF_TOKEN", "hf_WrongTokenFromTheEnvironment")
    run = cli("models", "download", "tiny-gated")
    assert_plain_error(run, "The access token was refused for Tiny tiny-gated")
    assert "is a gated model" not in run.err and "hf_WrongTokenFromTheEnvironment" not in run.err


def test_models_download_mistakes_and_offline(fake_hub, monkeypatch):
    assert_plain_error(cli("models", "download", "nope"), '"nope" is not in the model catalog; choose one of: ')
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert_plain_error(cli("models", "download", "tiny-sd15"), "Downloads are switched off on this computer")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    assert_plain_error(cli("models", "download", "tiny-sd15"), "cannot be reached: this computer seems to be offline")
    assert fake_hub.log == []


def test_models_download_stops_cleanly_on_ctrl_c_and_resumes(fake_hub):
    fake_hub.throttle = 2e6  # about 3 s for the whole model

    def interrupt() -> None:  # once the download is under way (and its Ctrl+C handler installed)
        deadline = time.monotonic() + 20
        while not fake_hub.body_bytes("unet/diffusion_pytorch_model.safetensors") and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    run = cli("models", "download", "tiny-sd15")
    thread.join()
    assert run.rc == 130, run.err
    assert "Traceback" not in run.err
    assert "storystudio: the download was stopped; run the same command again to continue" in run.err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert _catalog_line(cli("models", "list"), "tiny-sd15").split()[1] == "partly"

    fake_hub.throttle = None
    run = cli("models", "download", "tiny-sd15")
    assert run.rc == 0, run.err
    assert "were already here." in run.err


def test_models_import_and_remove(tmp_path, monkeypatch, tiny_model_dirs):
    use_hub(monkeypatch, tmp_path)
    ckpt = tmp_path / "mine.safetensors"
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch_zeros(2),
               "model.diffusion_model.out.0.weight": torch_zeros(2),
               "first_stage_model.decoder.conv_out.weight": torch_zeros(2)}, str(ckpt))
    run = cli("models", "import", ckpt)
    assert run.rc == 0, run.err
    own = model_folders()["StoryStudio models"]
    size = ckpt.stat().st_size
    assert run.out.strip() == f"Imported the SD1.5 model as {own / 'mine.safetensors'} ({size} B)."

    pickled = tmp_path / "old.ckpt"
    __import__("torch").save({"state_dict": {"cond_stage_model.model.ln_final.weight": torch_zeros(2),
                                             "model.diffusion_model.out.0.weight": torch_zeros(2),
                                             "first_stage_model.decoder.conv_out.weight": torch_zeros(2)}}, pickled)
    assert_plain_error(cli("models", "import", pickled), "old.ckpt is a pickled checkpoint")
    run = cli("models", "import", pickled, "--allow-pickle")
    assert run.rc == 0 and run.out.startswith("Imported the SD2.x model as "), run.err

    folder = tmp_path / "folder-model"
    shutil.copytree(tiny_model_dirs["sd15"], folder)
    run = cli("models", "import", folder)
    assert run.rc == 0 and run.out.startswith(f"Added the SD1.5 model folder {folder} (used where it is"), run.err
    rows = [line.split("\t") for line in cli("models", "list").out.splitlines() if "\t" in line]
    assert {(r[0], r[1]) for r in rows} == {(str(folder), "sd15"), (str(own / "mine.safetensors"), "sd15"),
                                            (str(own / "old.safetensors"), "sd2")}

    run = cli("models", "remove", folder)
    assert run.rc == 0 and "its files were left where they are" in run.out
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    run = cli("models", "remove", own / "mine.safetensors")
    assert run.rc == 0 and run.out.strip() == f"Removed {own / 'mine.safetensors'} ({size} B freed)."
    assert_plain_error(cli("models", "remove", "no-such-model"), "is not a model StoryStudio can remove")
    assert_plain_error(cli("models", "import", tmp_path / "missing.safetensors"), "does not exist")


def torch_zeros(n: int):
    import torch

    return torch.zeros(n)
