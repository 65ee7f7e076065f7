"""The story pipeline: write then read, seeds, regeneration from saved banks, progress and cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from storystudio.engine.attention.bank import CharacterBank
from storystudio.engine.attention.consistent import ConsistencyConfig, ConsistentAttnProcessor
from storystudio.engine.story.pipeline import (
    GenerationCancelled,
    GenerationSettings,
    StoryPipeline,
    derive_seed,
)
from storystudio.project.script import parse_script


def fast(**kw) -> GenerationSettings:
    base = dict(steps=3, width=64, height=64, seed=11, id_length=4)
    base.update(kw)
    return GenerationSettings(**base)


ALWAYS = ConsistencyConfig(schedule=((0, 1.0),))  # consistent attention in every layer at every step


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def rendered(tiny_sdxl):
    story = parse_script(
        "[Ann] a girl with red hair and a green coat\n[Bo] a tall man with a grey beard\n\n"
        "[Ann] reads a book # Ann loves books.\n[Ann] walks in the rain\n[Bo] paints a fence\n"
        "[Ann] eats an apple\n[NC] a quiet street at night # Later.\n[Ann] and [Bo] laugh together\n"
        "[Ann] waves goodbye\n"
    )
    engine = StoryPipeline(tiny_sdxl)
    return story, engine, engine.render(story, fast())


def test_plan_writes_references_then_reads(rendered):
    story, engine, result = rendered
    writes, reads, messages = engine.plan(story, fast())
    assert [(w.characters, w.keys) for w in writes] == [
        (["Ann"], ["panel-1", "panel-2", "panel-4", "panel-7"]),
        (["Bo"], ["panel-3"]),
    ]
    assert [(r.phase, r.keys, r.characters) for r in reads] == [
        ("plain", ["panel-5"], []),
        ("read", ["panel-6"], ["Ann", "Bo"]),
    ]
    assert any("[Bo] appears alone in only 1 panel" in m for m in messages)
    assert list(result.images) == [p.key for p in story.panels]
    roles = {k: v.role for k, v in result.images.items()}
    assert roles["panel-1"] == roles["panel-3"] == "reference" and roles["panel-6"] == "panel"
    assert all(img.image.size == (64, 64) for img in result.images.values())


def test_batched_read_panels(tiny_sdxl):
    story = parse_script("[Ann] a girl\n\n[Ann] one\n[Ann] two\n[Ann] three\n[Ann] four\n[Ann] five\n")
    writes, reads, _ = StoryPipeline(tiny_sdxl).plan(story, fast(id_length=2, batch_size=2))
    assert [w.keys for w in writes] == [["panel-1", "panel-2"]]
    assert [r.keys for r in reads] == [["panel-3", "panel-4"], ["panel-5"]]


def test_bank_bytes_and_recipe(rendered):
    story, engine, result = rendered
    ann = result.banks["Ann"]
    assert ann.num_steps == 3
    unet = engine.pipe.unet
    expected = 0
    for name, slot in ann.slots.items():
        halves, tokens, channels = slot.shape
        assert halves == 2 and channels == unet.get_submodule(name).to_q.in_features
        expected += halves * tokens * channels
    assert ann.bytes_per_step == expected * 4  # float32 on the CPU
    assert ann.nbytes == 3 * ann.bytes_per_step == ann.data.numel() * 4
    assert result.bank_bytes == ann.nbytes + result.banks["Bo"].nbytes
    assert ann.recipe["seeds"] == [derive_seed(11, k) for k in ("panel-1", "panel-2", "panel-4", "panel-7")]
    assert ann.recipe["steps"] == 3 and ann.recipe["width"] == 64


def test_seeds_are_derived_from_story_seed_and_panel(rendered):
    story, engine, result = rendered
    seeds = [img.parameters["seed"] for img in result.images.values()]
    assert len(set(seeds)) == len(seeds)
    assert result.images["panel-6"].parameters["seed"] == derive_seed(11, "panel-6")
    assert derive_seed(11, "panel-6") != derive_seed(12, "panel-6")
    assert derive_seed(11, "panel-6", 1) != derive_seed(11, "panel-6", 0)


def test_regenerating_a_panel_reproduces_it(rendered):
    story, engine, result = rendered
    again = engine.render(story, fast(), banks=result.banks, only=["panel-6", "panel-5"])
    assert list(again.images) == ["panel-5", "panel-6"]
    for key in again.images:
        assert np.array_equal(pixels(again.images[key].image), pixels(result.images[key].image))
    assert again.unet_calls["write"] == []  # no references generated again


def test_saved_banks_reproduce_a_panel_in_a_new_session(rendered, tiny_model_dirs, tmp_path):
    from storystudio.engine.models.loading import load_model

    story, engine, result = rendered
    for name, bank in result.banks.items():
        bank.save(tmp_path / f"{name}.safetensors")
    fresh = StoryPipeline(load_model(str(tiny_model_dirs["sdxl"]), device="cpu"))
    banks = {name: CharacterBank.load(tmp_path / f"{name}.safetensors") for name in ("Ann", "Bo")}
    assert torch.equal(banks["Ann"].data, result.banks["Ann"].data)
    assert banks["Ann"].recipe == result.banks["Ann"].recipe
    again = fresh.render(story, fast(), banks=banks, only=["panel-6"])
    assert np.array_equal(pixels(again.images["panel-6"].image), pixels(result.images["panel-6"].image))


def test_bank_can_be_rebuilt_from_its_recipe(rendered):
    """Without the tensors, the same seeds and settings write the same bank again."""
    story, engine, result = rendered
    rebuilt = engine.render(story, fast(), only=["panel-1"])
    assert torch.equal(rebuilt.banks["Ann"].data, result.banks["Ann"].data)
    assert np.array_equal(pixels(rebuilt.images["panel-1"].image), pixels(result.images["panel-1"].image))


def test_variation_changes_the_panel_and_keeps_the_rest(rendered):
    story, engine, result = rendered
    story.panels[5].variation = 1
    try:
        varied = engine.render(story, fast(), banks=result.banks, only=["panel-6"])
    finally:
        story.panels[5].variation = 0
    assert varied.images["panel-6"].parameters["seed"] == derive_seed(11, "panel-6", 1)
    assert not np.array_equal(pixels(varied.images["panel-6"].image), pixels(result.images["panel-6"].image))


def test_other_story_seed_changes_everything(rendered):
    story, engine, result = rendered
    other = engine.render(story, fast(seed=12), only=["panel-3"])
    assert not np.array_equal(pixels(other.images["panel-3"].image), pixels(result.images["panel-3"].image))


def test_no_character_panels_use_plain_attention(tiny_sd15, monkeypatch):
    extended = []
    original = ConsistentAttnProcessor._extend
    monkeypatch.setattr(ConsistentAttnProcessor, "_extend",
                        lambda self, *a, **k: extended.append(self.layer.name) or original(self, *a, **k))
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[NC] an empty beach\n[Ann] sleeps\n")
    engine = StoryPipeline(tiny_sd15)
    result = engine.render(story, fast(steps=4), only=["panel-2"])
    assert result.images["panel-2"].parameters["phase"] == "plain"
    assert extended == []
    assert "Ann" not in result.banks  # nobody needed her references
    result = engine.render(story, fast(steps=4, id_length=1), only=["panel-3"])
    assert extended  # the Ann panel read her bank


def test_character_without_solo_panel_gets_reference_sheets(tiny_sd15):
    story = parse_script("[Ann] a girl\n[Bo] a man\n\n[Ann] reads\n[Ann] and [Bo] talk\n")
    result = StoryPipeline(tiny_sd15).render(story, fast(id_length=2))
    assert [s.key for s in result.sheets] == ["sheet-Bo-1", "sheet-Bo-2"]
    assert all(s.role == "sheet" for s in result.sheets)
    assert any("[Bo] never appears alone" in m for m in result.messages)
    assert result.banks["Bo"].recipe["keys"] == ["sheet-Bo-1", "sheet-Bo-2"]
    assert set(result.images) == {"panel-1", "panel-2"}


def test_progress_reports_every_step_with_a_preview(tiny_sd15):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[NC] a beach\n")
    events = []
    StoryPipeline(tiny_sd15).render(story, fast(steps=3), progress=events.append)
    assert [(e.phase, e.step) for e in events] == [("write", 1), ("write", 2), ("write", 3),
                                                    ("plain", 1), ("plain", 2), ("plain", 3)]
    assert [e.panels_done for e in events] == [0, 0, 0, 1, 1, 1]
    assert all(e.panels_total == 2 for e in events)
    assert events[0].preview.size == (8, 8) and events[0].preview.mode == "RGB"


def test_cancel_stops_within_one_step(tiny_sd15):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[NC] a beach\n")
    cancel = threading.Event()
    steps_seen = []
    images = []

    def progress(p):
        steps_seen.append(p.step)
        if p.step == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        StoryPipeline(tiny_sd15).render(story, fast(steps=6, id_length=1), progress=progress, cancel=cancel,
                                        on_image=images.append)
    assert steps_seen == [1, 2]  # the step after the request never ran
    assert images == []


def test_long_prompt_truncation_is_reported(tiny_sd15):
    long = " ".join(["a very long description of a sunny seaside village"] * 12)
    story = parse_script(f"[Ann] a girl\n\n[Ann] {long}\n")
    messages = StoryPipeline(tiny_sd15).check_prompts(story, fast())
    assert len(messages) == 1
    assert "Panel 1" in messages[0] and "cut off" in messages[0] and "is ignored" in messages[0]
    short = parse_script("[Ann] a girl\n\n[Ann] reads\n")
    assert StoryPipeline(tiny_sd15).check_prompts(short, fast()) == []


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(width=70), "multiples of"),
        (dict(steps=0), "at least 1"),
        (dict(style="Nope"), "no style called"),
        (dict(scheduler="nope"), "Unknown scheduler"),
        (dict(id_length=0), "reference images \\(id_length\\) must be at least 1"),
    ],
)
def test_bad_settings_are_refused_before_work(tiny_sd15, small_story, settings, message):
    with pytest.raises(ValueError, match=message):
        StoryPipeline(tiny_sd15).render(small_story, fast(**settings))


def test_stale_banks_are_written_again_not_used(rendered):
    story, engine, result = rendered
    again = engine.render(story, fast(steps=4), banks=result.banks, only=["panel-6"])
    assert len(again.unet_calls["write"]) == 2 * 4  # Ann and Bo written again, 4 steps each
    assert again.banks["Ann"].num_steps == 4
    story.characters[0].description = "a girl with blue hair"
    try:
        edited = engine.render(story, fast(), banks=result.banks, only=["panel-6"])
    finally:
        story.characters[0].description = "a girl with red hair and a green coat"
    assert len(edited.unet_calls["write"]) == 3  # only Ann, whose description changed
    assert "blue hair" in edited.banks["Ann"].recipe["prompts"][0]
    assert edited.banks["Bo"] is result.banks["Bo"]


def test_without_guidance_the_story_renders(tiny_sdxl):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n")
    result = StoryPipeline(tiny_sdxl).render(story, fast(guidance=1.0, id_length=2))
    assert set(result.images) == {"panel-1", "panel-2", "panel-3"}
    assert all(slot.shape[0] == 1 for slot in result.banks["Ann"].slots.values())  # one half, no CFG


def test_schedulers_and_freeu_switch(tiny_sd15):
    story = parse_script("[NC] a beach\n")
    engine = StoryPipeline(tiny_sd15)
    a = engine.render(story, fast(scheduler="euler", freeu=False)).images["panel-1"].image
    assert type(engine.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    b = engine.render(story, fast(scheduler="euler", freeu=True)).images["panel-1"].image
    assert not np.array_equal(pixels(a), pixels(b))
    assert getattr(engine.pipe.unet.up_blocks[0], "b1", None) is None  # FreeU is switched off after the run


def test_regenerating_a_reference_panel_rewrites_its_character(rendered):
    story, engine, result = rendered
    handed = []
    again = engine.render(story, fast(), banks=dict(result.banks), only=["panel-2"], on_image=handed.append)
    assert list(again.images) == ["panel-2"] and [h.key for h in handed] == ["panel-2"]
    assert again.images["panel-2"].role == "reference"
    assert np.array_equal(pixels(again.images["panel-2"].image), pixels(result.images["panel-2"].image))
    assert torch.equal(again.banks["Ann"].data, result.banks["Ann"].data)


# ---- panels of their own size ------------------------------------------------------------


def spy_attention(monkeypatch) -> list[tuple[str, str, int, int]]:
    """(layer, phase, own tokens, keys) of every call of a consistent-attention layer."""
    seen = []
    original = ConsistentAttnProcessor._attend

    def spy(self, attn, q, k, v, b, m=None):
        seen.append((self.layer.name, self.state.phase.value, q.shape[1], k.shape[1]))
        return original(self, attn, q, k, v, b, m)

    monkeypatch.setattr(ConsistentAttnProcessor, "_attend", spy)
    return seen


def tokens_at(unet, layer: str, width: int, height: int) -> int:
    from storystudio.engine.attention.consistent import block_scale

    scale = 8 * block_scale(unet, layer)  # the VAE of the tiny models also downsamples 8 times
    return (width // scale) * (height // scale)


def test_a_panel_is_drawn_at_its_own_size(tiny_model, monkeypatch):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n[NC] a beach\n")
    engine = StoryPipeline(tiny_model)
    plain_sizes = engine.render(story, fast(id_length=2, consistency=ALWAYS))
    story.panels[2].size = (64, 96)
    story.panels[3].size = (96, 64)
    seen = spy_attention(monkeypatch)
    events = []
    result = engine.render(story, fast(id_length=2, consistency=ALWAYS), progress=events.append)
    sizes = {k: img.image.size for k, img in result.images.items()}
    assert sizes == {"panel-1": (64, 64), "panel-2": (64, 64), "panel-3": (64, 96), "panel-4": (96, 64)}
    for img in result.images.values():
        assert (img.parameters["width"], img.parameters["height"]) == img.image.size
    assert result.images["panel-3"].parameters["phase"] == "read"
    # The bank written at 64x64 was read by the 64x96 panel: at every step, every consistent layer
    # attended to the panel's own tokens (a 64x96 grid) plus the banked ones.
    unet = engine.pipe.unet
    read = [(name, q, k) for name, phase, q, k in seen if phase == "read"]
    assert len(read) == 3 * len({name for name, *_ in seen})
    assert all(q == tokens_at(unet, name, 64, 96) and k > q for name, q, k in read)
    assert next(e.preview for e in events if e.panel_keys == ["panel-3"]).size == (8, 12)
    # The references, and so the bank, do not depend on the sizes of other panels.
    assert torch.equal(result.banks["Ann"].data, plain_sizes.banks["Ann"].data)
    assert np.array_equal(pixels(result.images["panel-1"].image), pixels(plain_sizes.images["panel-1"].image))


def test_read_batches_share_cast_and_size(tiny_sd15, monkeypatch):
    story = parse_script("[Ann] a girl\n\n[Ann] one\n[Ann] two\n[Ann] three\n[Ann] four\n[Ann] five\n[Ann] six\n"
                         "[Ann] seven\n[Ann] eight\n[NC] a beach\n")
    for number, size in ((3, (64, 96)), (5, (64, 96)), (6, (96, 64)), (7, (64, 96)), (9, (64, 96))):
        story.panels[number - 1].size = size
    settings = fast(id_length=2, batch_size=2, consistency=ALWAYS)
    engine = StoryPipeline(tiny_sd15)
    _, reads, _ = engine.plan(story, settings)
    assert [(r.keys, r.size) for r in reads] == [
        (["panel-3", "panel-5"], (64, 96)),
        (["panel-4", "panel-8"], (64, 64)),
        (["panel-6"], (96, 64)),
        (["panel-7"], (64, 96)),  # the batch of its size is full
        (["panel-9"], (64, 96)),  # nobody in it: another cast, so another batch
    ]
    seen = spy_attention(monkeypatch)
    result = engine.render(story, settings)
    for r in reads:
        for key in r.keys:
            assert result.images[key].image.size == r.size
            assert result.images[key].parameters["batch"] == r.keys
            assert (result.images[key].parameters["width"], result.images[key].parameters["height"]) == r.size
    unet = engine.pipe.unet
    read_sizes = {q for name, phase, q, k in seen if phase == "read" and k > q and name.startswith("up_blocks.2")}
    assert read_sizes == {tokens_at(unet, "up_blocks.2", *size) for size in ((64, 96), (64, 64), (96, 64))}
    alone = engine.render(story, settings, banks=result.banks, only=["panel-7"])
    assert alone.unet_calls["write"] == []
    assert np.array_equal(pixels(alone.images["panel-7"].image), pixels(result.images["panel-7"].image))


def test_reference_panel_of_another_size_is_drawn_again_at_its_size(tiny_sd15):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n")
    engine = StoryPipeline(tiny_sd15)
    before = engine.render(story, fast(id_length=2))
    story.panels[1].size = (96, 64)
    writes, reads, messages = engine.plan(story, fast(id_length=2))
    assert [(w.keys, w.size, w.redrawn) for w in writes] == [(["panel-1", "panel-2"], (64, 64), {"panel-2"})]
    assert [(r.keys, r.size) for r in reads] == [(["panel-2"], (96, 64)), (["panel-3"], (64, 64))]
    assert any("drawn at 64x64 as references and again at their own size" in m for m in messages)
    handed = []
    result = engine.render(story, fast(id_length=2), on_image=handed.append)
    assert [h.key for h in handed] == ["panel-1", "reference-panel-2", "panel-2", "panel-3"]
    assert result.images["panel-2"].image.size == (96, 64) and result.images["panel-2"].role == "panel"
    assert [(s.key, s.role, s.image.size) for s in result.sheets] == [("reference-panel-2", "reference", (64, 64))]
    assert np.array_equal(pixels(result.sheets[0].image), pixels(before.images["panel-2"].image))
    # The bank is the one of the square references: it stays current when a frame changes shape.
    assert torch.equal(result.banks["Ann"].data, before.banks["Ann"].data)
    assert engine.render(story, fast(id_length=2), banks=before.banks, only=["panel-3"]).unet_calls["write"] == []
    again = engine.render(story, fast(id_length=2), banks=before.banks, only=["panel-2"])
    assert [s.key for s in again.sheets] == ["reference-panel-2"]  # asking for a reference panel draws its references
    assert np.array_equal(pixels(again.images["panel-2"].image), pixels(result.images["panel-2"].image))


def test_a_panel_of_its_own_size_in_half_precision(tiny_model_dirs, monkeypatch):
    from storystudio.engine.models.loading import load_model

    model = load_model(str(tiny_model_dirs["sdxl"]), device="cpu", dtype="fp16")
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n")
    story.panels[2].size = (64, 96)
    seen = spy_attention(monkeypatch)
    result = StoryPipeline(model).render(story, fast(id_length=2, consistency=ALWAYS))
    assert result.banks["Ann"].dtype == torch.float16
    assert result.images["panel-3"].image.size == (64, 96)
    read = [(name, q, k) for name, phase, q, k in seen if phase == "read"]
    assert read and all(q == tokens_at(model.pipe.unet, name, 64, 96) and k > q for name, q, k in read)
    assert pixels(result.images["panel-3"].image).std() > 0  # not a blank (NaN) picture


@pytest.mark.parametrize(
    "size, message",
    [
        ((64, 80), r"^Panel 2 is set to 64x80 pixels: width and height must be multiples of 32 for this model\.$"),
        ((40, 64), r"^Panel 2 is set to 40x64 pixels: the image must be at least 64x64 pixels; width and height must be"),
        ((64.0, 64), r"^Panel 2 has a size that is not a width and a height in whole pixels\.$"),
        ((64, 64, 64), r"^Panel 2 has a size that is not a width and a height in whole pixels\.$"),
    ],
)
def test_bad_panel_sizes_are_refused_before_work(tiny_sd15, small_story, size, message):
    small_story.panels[1].size = size
    events = []
    with pytest.raises(ValueError, match=message):
        StoryPipeline(tiny_sd15).render(small_story, fast(), progress=events.append)
    assert events == []
