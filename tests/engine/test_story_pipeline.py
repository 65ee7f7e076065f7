"""The story pipeline: references and panels in one step loop, seeds, kept banks, progress and cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from storystudio.engine.attention.bank import BankCache, BankWriter, CharacterBank
from storystudio.engine.attention.config import ConsistencyConfig
from storystudio.engine.attention.consistent import ConsistentAttnProcessor, level_tokens
from storystudio.engine.errors import GenerationCancelled
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline, derive_seed
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
    return story, engine, engine.render(story, fast(), keep_banks=True)


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
    assert any("[Bo] appears alone in only 1 panel" in m.text and m.panels == ("panel-3",) for m in messages)
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
        halves, images, tokens, channels = slot.shape
        assert halves == 2 and images == 4 and channels == unet.get_submodule(name).to_k.out_features
        expected += 2 * halves * images * tokens * channels  # keys and values
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


def test_kept_banks_give_the_same_pictures_as_references_in_flight(rendered):
    """Two phases (references kept, then panels read from the kept bank) equal one step loop, bit for bit."""
    story, engine, result = rendered
    readers = ["panel-5", "panel-6"]  # the panels that are no reference (panel-6 reads Ann and Bo)
    again = engine.render(story, fast(), banks=result.banks, only=readers)
    assert list(again.images) == readers
    for key in again.images:
        assert np.array_equal(pixels(again.images[key].image), pixels(result.images[key].image))
    assert again.unet_calls["write"] == []  # no references drawn again


def test_regenerating_a_panel_later_draws_its_references_beside_it(rendered):
    story, engine, result = rendered
    again = engine.render(story, fast(), only=["panel-6"])
    assert np.array_equal(pixels(again.images["panel-6"].image), pixels(result.images["panel-6"].image))
    assert len(again.unet_calls["write"]) == 2 * 3  # Ann's and Bo's references, 3 steps each
    assert list(again.images) == ["panel-6"] and again.banks == {}


def test_by_default_no_bank_outlives_its_step(tiny_sd15, monkeypatch):
    made = []
    original = BankWriter.__init__
    monkeypatch.setattr(BankWriter, "__init__", lambda self, *a, **k: made.append(a) or original(self, *a, **k))
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n")
    result = StoryPipeline(tiny_sd15).render(story, fast(id_length=2))
    assert made == [] and result.banks == {} and len(result.images) == 3


def test_a_bank_cache_within_its_budget_replaces_the_references(rendered, tmp_path):
    story, engine, result = rendered
    size = result.banks["Ann"].nbytes + result.banks["Bo"].nbytes
    cache = BankCache(ram_bytes=size, disk_bytes=0)
    first = engine.render(story, fast(), only=["panel-6"], bank_cache=cache)
    assert len(first.unet_calls["write"]) == 6 and cache.usage[0] == size
    second = engine.render(story, fast(), only=["panel-6"], bank_cache=cache)
    assert second.unet_calls["write"] == []  # both characters came from the cache
    assert np.array_equal(pixels(second.images["panel-6"].image), pixels(result.images["panel-6"].image))
    # room on disk for Ann's bank and its file's header
    small = BankCache(ram_bytes=result.banks["Bo"].nbytes, disk_bytes=result.banks["Ann"].nbytes + 65536,
                      folder=tmp_path / "banks")
    engine.render(story, fast(), only=["panel-6"], bank_cache=small)
    files = list((tmp_path / "banks").glob("*.bank.safetensors"))
    assert len(files) == 1  # Ann's bank is larger than the host budget: it went to disk; Bo's stayed in memory
    assert small.usage == (result.banks["Bo"].nbytes, files[0].stat().st_size)
    third = engine.render(story, fast(), only=["panel-6"], bank_cache=small)
    assert third.unet_calls["write"] == []
    assert np.array_equal(pixels(third.images["panel-6"].image), pixels(result.images["panel-6"].image))
    none = BankCache()  # no budget: nothing is kept, nothing recorded
    assert not none.fits(1)


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
    rebuilt = engine.render(story, fast(), only=["panel-1"], keep_banks=True)
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
    original = ConsistentAttnProcessor._read
    monkeypatch.setattr(ConsistentAttnProcessor, "_read",
                        lambda self, *a, **k: extended.append(self.slot) or original(self, *a, **k))
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[NC] an empty beach\n[Ann] sleeps\n")
    engine = StoryPipeline(tiny_sd15)
    result = engine.render(story, fast(steps=4), only=["panel-2"])
    assert result.images["panel-2"].parameters["phase"] == "plain"
    assert extended == []
    assert result.unet_calls["write"] == []  # nobody needed her references
    result = engine.render(story, fast(steps=4, id_length=1), only=["panel-3"])
    assert extended  # the Ann panel read her bank


def test_character_without_solo_panel_gets_reference_sheets(tiny_sd15):
    story = parse_script("[Ann] a girl\n[Bo] a man\n\n[Ann] reads\n[Ann] and [Bo] talk\n")
    result = StoryPipeline(tiny_sd15).render(story, fast(id_length=2), keep_banks=True)
    assert [s.key for s in result.sheets] == ["sheet-Bo-1", "sheet-Bo-2"]
    assert all(s.role == "sheet" for s in result.sheets)
    assert any("[Bo] never appears alone" in m for m in result.messages)
    assert result.banks["Bo"].recipe["keys"] == ["sheet-Bo-1", "sheet-Bo-2"]
    assert set(result.images) == {"panel-1", "panel-2"}


def test_progress_reports_every_step_with_a_preview(tiny_sd15):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[NC] a beach\n")
    events = []
    StoryPipeline(tiny_sd15).render(story, fast(steps=3), progress=events.append)
    # references and panels advance together, one step at a time
    assert [(e.phase, e.step) for e in events] == [("write", 1), ("plain", 1), ("write", 2), ("plain", 2),
                                                    ("write", 3), ("plain", 3)]
    assert [(e.work_done, e.work_total) for e in events] == [(i, 6) for i in range(1, 7)]
    assert all(e.panels_total == 2 for e in events)
    assert events[0].preview.size == (8, 8) and events[0].preview.mode == "RGB"
    assert events[-1].preview is not None  # the last step of a group always has one


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
    assert steps_seen == [1, 1, 1, 2]  # three groups at step 1; the call after the request never ran
    assert images == []


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(width=70), "multiples of"),
        (dict(steps=0), "^Steps must be a whole number from 1 to 150\\.$"),
        (dict(style="Nope"), "no style called"),
        (dict(scheduler="nope"), "Unknown scheduler"),
        (dict(id_length=0), "reference images \\(id_length\\) must be from 1 to 8"),
    ],
)
def test_bad_settings_are_refused_before_work(tiny_sd15, small_story, settings, message):
    with pytest.raises(ValueError, match=message):
        StoryPipeline(tiny_sd15).render(small_story, fast(**settings))


def test_stale_banks_are_written_again_not_used(rendered):
    story, engine, result = rendered
    again = engine.render(story, fast(steps=4), banks=result.banks, only=["panel-6"])
    assert len(again.unet_calls["write"]) == 2 * 4  # Ann and Bo drawn again, 4 steps each
    story.characters[0].description = "a girl with blue hair"
    try:
        edited = engine.render(story, fast(), banks=result.banks, only=["panel-6"], keep_banks=True)
    finally:
        story.characters[0].description = "a girl with red hair and a green coat"
    assert len(edited.unet_calls["write"]) == 3  # only Ann, whose description changed
    assert "blue hair" in edited.banks["Ann"].recipe["prompts"][0]
    assert "Bo" not in edited.banks  # Bo's kept bank was current and was read


def test_without_guidance_the_story_renders(tiny_sdxl):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n")
    result = StoryPipeline(tiny_sdxl).render(story, fast(guidance=1.0, id_length=2), keep_banks=True)
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
    again = engine.render(story, fast(), banks=dict(result.banks), only=["panel-2"], on_image=handed.append,
                          keep_banks=True)
    assert list(again.images) == ["panel-2"] and [h.key for h in handed] == ["panel-2"]
    assert again.images["panel-2"].role == "reference"
    assert np.array_equal(pixels(again.images["panel-2"].image), pixels(result.images["panel-2"].image))
    assert torch.equal(again.banks["Ann"].data, result.banks["Ann"].data)


# ---- panels of their own size ------------------------------------------------------------


def spy_attention(monkeypatch) -> list[tuple[str, str, int, int]]:
    """(layer, phase, own tokens, keys) of every read of a consistent-attention layer."""
    seen = []
    original = ConsistentAttnProcessor._read

    def spy(self, attn, q, k, v):
        name = next(n for n, info in self.state.layers.items() if self.state.slots[info.index] is self.slot)
        seen.append((name, "read", q.shape[1], k.shape[1] + self.slot.bank_k.shape[1]))
        return original(self, attn, q, k, v)

    monkeypatch.setattr(ConsistentAttnProcessor, "_read", spy)
    return seen


def tokens_at(unet, layer: str, width: int, height: int) -> int:
    from storystudio.engine.attention.consistent import block_scale

    # the VAE of the tiny models also downsamples 8 times
    return level_tokens(block_scale(unet, layer), (height // 8, width // 8))


def test_a_panel_is_drawn_at_its_own_size(tiny_model, monkeypatch):
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n[NC] a beach\n")
    engine = StoryPipeline(tiny_model)
    plain_sizes = engine.render(story, fast(id_length=2, consistency=ALWAYS), keep_banks=True)
    story.panels[2].size = (64, 96)
    story.panels[3].size = (96, 64)
    seen = spy_attention(monkeypatch)
    events = []
    result = engine.render(story, fast(id_length=2, consistency=ALWAYS), progress=events.append, keep_banks=True)
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
    result = engine.render(story, settings, keep_banks=True)
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
    before = engine.render(story, fast(id_length=2), keep_banks=True)
    story.panels[1].size = (96, 64)
    writes, reads, messages = engine.plan(story, fast(id_length=2))
    assert [(w.keys, w.size, w.redrawn) for w in writes] == [(["panel-1", "panel-2"], (64, 64), {"panel-2"})]
    assert [(r.keys, r.size) for r in reads] == [(["panel-2"], (96, 64)), (["panel-3"], (64, 64))]
    assert any("drawn at 64x64 as references and again at their own size" in m.text for m in messages)
    handed = []
    result = engine.render(story, fast(id_length=2), on_image=handed.append, keep_banks=True)
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
    result = StoryPipeline(model).render(story, fast(id_length=2, consistency=ALWAYS), keep_banks=True)
    assert result.banks["Ann"].dtype == torch.float16
    assert result.images["panel-3"].image.size == (64, 96)
    read = [(name, q, k) for name, phase, q, k in seen if phase == "read"]
    assert read and all(q == tokens_at(model.pipe.unet, name, 64, 96) and k > q for name, q, k in read)
    assert pixels(result.images["panel-3"].image).std() > 0  # not a blank (NaN) picture


@pytest.mark.parametrize(
    "size, message",
    [
        ((64, 80), r"^Panel 2 is set to 64x80 pixels: width and height must be multiples of 32 for this model\.$"),
        ((40, 64), r"^Panel 2 is set to 40x64 pixels: the picture must be at least 64x64 pixels; width and height must be"),
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


# ---- pinned references (a locked character) ------------------------------------------------


def test_pinned_references_are_drawn_exactly_whatever_the_story_becomes(tiny_sd15):
    from storystudio.project.story import ReferenceSet

    story = parse_script("[Ann] a girl\n\n[Ann] reads\n[Ann] sleeps\n[Ann] runs\n")
    engine = StoryPipeline(tiny_sd15)  # one panel per call: batching moves the last bits of the CPU's sums
    first = engine.render(story, fast(id_length=2, batch_size=1))
    pinned = ReferenceSet(["panel-1", "panel-2"], [story.expand(p) for p in story.panels[:2]],
                          [derive_seed(11, "panel-1"), derive_seed(11, "panel-2")])
    story.characters[0].references = pinned
    same = engine.render(story, fast(id_length=2, batch_size=1))
    for key in first.images:  # pinned as they were drawn: nothing changes
        assert np.array_equal(pixels(same.images[key].image), pixels(first.images[key].image)), key
    story.panels[1].prompt = "[Ann] dances in the rain"  # a reference panel is edited afterwards
    edited = engine.render(story, fast(id_length=2, batch_size=1))
    assert [(s.key, s.role) for s in edited.sheets] == [("reference-panel-2", "reference")]
    assert np.array_equal(pixels(edited.sheets[0].image), pixels(first.images["panel-2"].image))
    assert np.array_equal(pixels(edited.images["panel-1"].image), pixels(first.images["panel-1"].image))
    assert np.array_equal(pixels(edited.images["panel-3"].image), pixels(first.images["panel-3"].image))
    assert edited.images["panel-2"].parameters["phase"] == "read"  # the edited panel reads the pinned look
    pinned.chosen = [0]  # the panels take only the first reference's look
    chosen = engine.render(story, fast(id_length=2, batch_size=1), keep_banks=True)
    assert np.array_equal(pixels(chosen.images["panel-1"].image), pixels(first.images["panel-1"].image))
    assert not np.array_equal(pixels(chosen.images["panel-3"].image), pixels(first.images["panel-3"].image))
    assert all(slot.shape[1] == 1 for slot in chosen.banks["Ann"].slots.values())  # one image's tokens kept
    pinned.chosen = [5]
    with pytest.raises(ValueError, match="chosen references of \\[Ann\\] do not match"):
        engine.render(story, fast(id_length=2, batch_size=1))


def test_long_prompts_are_read_whole_and_batched_by_length(tiny_sd15, monkeypatch):
    long = ", ".join(f"detail {i} of the seaside village" for i in range(8))  # past 77 tokens
    story = parse_script(f"[Ann] a girl\n\n[Ann] reads\n[Ann] {long}\n[Ann] sleeps\n[Ann] swims\n")
    engine = StoryPipeline(tiny_sd15)
    settings = fast(id_length=1, batch_size=4)
    _, reads, notes = engine.plan(story, settings)
    assert [r.keys for r in reads] == [["panel-2"], ["panel-3", "panel-4"]]  # one UNet call, one text length
    chunks = engine.encoder.chunks(reads[0].prompts[0])  # the styled prompt with the description
    assert 1 < chunks < engine.encoder.max_chunks
    lengths = []
    original = tiny_sd15.pipe.unet.forward
    monkeypatch.setattr(tiny_sd15.pipe.unet, "forward",
                        lambda *a, **k: lengths.append(k["encoder_hidden_states"].shape[1]) or original(*a, **k))
    result = engine.render(story, settings)
    assert sorted(set(lengths)) == [77, 77 * chunks]
    assert not [n for n in result.notes if "Panel 2" in n.text]  # read whole: nothing to say
    too_long = ", ".join(f"part {i} of an endless list of things in the room" for i in range(80))
    story = parse_script("[Ann] a girl\n\n[Ann] reads\n")
    story.panels[0].prompt = f"[Ann] {too_long}"  # longer than a script line may be; a project's prompt may
    result = StoryPipeline(tiny_sd15).render(story, fast(steps=1))
    cut = [n for n in result.notes if n.text.startswith("Panel 1:")]
    assert len(cut) == 1 and cut[0].panels == ("panel-1",)
