"""Reference photos: an IP-Adapter face model loaded as diffusers loads it, acting on its character's pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from storystudio.engine.attention.config import ConsistencyConfig
from storystudio.engine.errors import ErrorKind, InputError, ModelError, error_kind
from storystudio.engine.models.random_weights import create_tiny_photo_adapter
from storystudio.engine.story.photos import PhotoAdapter, photo_hash
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.project.script import parse_script

STORY = ("[Ann] a girl with red hair and a green coat\n[Bo] a tall man with a grey beard\n\n"
         "[Ann] reads a book\n[Bo] paints a fence\n[Ann] and [Bo] laugh together\n")


def png(colour=(200, 40, 40), size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def adapter_dir(tiny_sd15, tmp_path_factory):
    return create_tiny_photo_adapter(tmp_path_factory.mktemp("ip") / "IP-Adapter", tiny_sd15.pipe.unet, "sd15")


def fast(adapter_dir, **kw) -> GenerationSettings:
    base = dict(steps=1, width=64, height=64, seed=2, id_length=1, consistency=ConsistencyConfig(schedule=((0, 1.0),)),
                photo_adapter=str(adapter_dir))
    return GenerationSettings(**dict(base, **kw))


def test_the_adapter_loads_through_load_ip_adapter_and_leaves_the_unet_as_it_was(tiny_sd15, adapter_dir):
    unet = tiny_sd15.pipe.unet
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    adapter = PhotoAdapter.load(tiny_sd15.pipe, "sd15", str(adapter_dir))
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None
    assert adapter.plus and set(adapter.layers) == {k.removesuffix(".processor") for k in before if "attn2" in k}
    tokens = adapter.tokens(png(), "Ann")
    other = adapter.tokens(png((20, 90, 200)), "Ann")
    assert tokens.cond.shape == (1, 4, unet.config.cross_attention_dim) == tokens.uncond.shape
    assert not np.allclose(tokens.cond.numpy(), other.cond.numpy())  # the photo is read, not ignored


@pytest.fixture(scope="module")
def drawn(tiny_sd15, adapter_dir):
    engine = StoryPipeline(tiny_sd15)
    story = parse_script(STORY)
    plain = engine.render(story, fast(adapter_dir))
    story.characters[0].photo = png()
    story.characters[0].photo_strength = 0.8
    with_photo = engine.render(story, fast(adapter_dir))
    story.characters[0].photo_strength = 0.0
    off = engine.render(story, fast(adapter_dir))
    return story, plain, with_photo, off


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_a_photo_changes_its_characters_pictures_only(drawn):
    story, plain, with_photo, _ = drawn
    ann, bo, both = (p.key for p in story.panels)
    assert not same(plain.images[ann], with_photo.images[ann])  # her reference, photo on the whole picture
    assert not same(plain.images[both], with_photo.images[both])  # in her region of the shared panel
    assert same(plain.images[bo], with_photo.images[bo])  # Bo's pictures know nothing of her photo
    recorded = with_photo.images[both].parameters["photos"]
    assert recorded == {"Ann": {"sha256": photo_hash(story.characters[0].photo), "strength": 0.8}}
    assert "photos" not in with_photo.images[bo].parameters


def test_a_photo_switched_off_leaves_everything_bit_identical(drawn):
    story, plain, _, off = drawn
    for panel in story.panels:
        assert same(plain.images[panel.key], off.images[panel.key])
        assert "photos" not in off.images[panel.key].parameters


def test_missing_adapter_weights_are_one_sentence_offering_the_models_dialog(tiny_sd15, tmp_path):
    story = parse_script(STORY)
    story.characters[1].photo = png()
    with pytest.raises(ModelError) as err:
        StoryPipeline(tiny_sd15).render(story, fast(tmp_path))
    assert error_kind(err.value) is ErrorKind.MISSING_MODEL
    text = str(err.value)
    assert "Models dialog" in text and "ip-adapter-plus-face-sd15" in text and text.count(".") >= 1
    assert "\n" not in text and "Traceback" not in text


@pytest.mark.parametrize("photo, strength, words", [
    (b"not a picture", 0.6, "cannot be read as a picture"),
    (b"", 0.6, None),  # an empty photo is no photo
    (png(), 3.5, "photo strength must be a number from 0 to 2"),
])
def test_bad_photos_are_plain_errors_before_any_work(tiny_sd15, adapter_dir, photo, strength, words, monkeypatch):
    story = parse_script(STORY)
    story.characters[0].photo, story.characters[0].photo_strength = photo, strength
    engine = StoryPipeline(tiny_sd15)
    if words is None:
        engine.check(story, fast(adapter_dir))
        return
    with pytest.raises(InputError, match=words):
        engine.check(story, fast(adapter_dir))
