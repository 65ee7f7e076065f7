"""``render --photo NAME=IMAGE``: checked before the model loads, and honoured (manifest and PNG parameters)."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from cli_helpers import FAST, assert_plain_error, cli
from storystudio.engine.imaging import read_png_parameters
from storystudio.engine.models.random_weights import create_tiny_photo_adapter


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "ann.jpg"
    Image.new("RGB", (40, 48), (180, 90, 60)).save(path, "JPEG")
    return path


@pytest.mark.parametrize("given, expected", [
    (["--photo", "Ann"], "--photo takes NAME=IMAGE"),
    (["--photo", "=x.png"], "--photo takes NAME=IMAGE"),
    (["--photo", "Zed={photo}"], '--photo names "Zed", who is not in this story (characters: Ann, Bo)'),
    (["--photo", "Ann={photo}", "--photo", "Ann={photo}"], "--photo gives [Ann] two photos"),
    (["--photo", "Ann=missing.png"], "the photo missing.png for [Ann] does not exist"),
    (["--photo", "Ann={script}"], "The reference photo of [Ann] cannot be read as a picture"),
    (["--photo", "Ann={photo}", "--photo-strength", "5"], "--photo-strength must be a number from 0 to 2"),
])
def test_bad_photos_are_refused_before_the_model_loads(given, expected, tmp_path, photo, small_script,
                                                       tiny_model_dirs):
    out = tmp_path / "out"
    options = [g.format(photo=photo, script=small_script) for g in given]
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *FAST, *options)
    assert_plain_error(run, expected)
    assert "Loading" not in run.err and not out.exists()


def test_a_photo_reaches_the_pictures_of_its_character(tmp_path, photo, small_script, tiny_model_dirs, tiny_sd15):
    adapter = create_tiny_photo_adapter(tmp_path / "IP-Adapter", tiny_sd15.pipe.unet, "sd15")
    out = tmp_path / "out"
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], "--steps", "1", "--size",
              "64x64", "--device", "cpu", "--id-length", "1", "--photo", f"Ann={photo}", "--photo-strength", "0.7",
              "--photo-adapter", adapter)
    assert run.rc == 0, run.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    recorded = {"sha256": hashlib.sha256(photo.read_bytes()).hexdigest(), "strength": 0.7}
    cast = {c["name"]: c for c in manifest["characters"]}
    assert cast["Ann"]["photo"] == recorded and cast["Bo"]["photo"] is None
    for entry in manifest["panels"]:
        if not entry["characters"]:
            continue
        params = read_png_parameters(out / entry["file"])
        assert params.get("photos") == ({"Ann": recorded} if "Ann" in entry["characters"] else None), entry
        assert entry.get("photos") == params.get("photos")
        if len(entry["characters"]) == 2:  # the shared panel: Ann on the left (tagged first), Bo on the right
            assert [r["character"] for r in params["regions"]] == ["Ann", "Bo"] == [r["character"] for r in
                                                                                   entry["regions"]]
