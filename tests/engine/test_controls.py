"""ControlNet guides in the story's step loop: a tiny random ControlNet loaded as a real one is, a pose that
changes its own panel only, in the write and the read phase, with consistent attention, strength and step
range; missing or unfitting ControlNets in one plain sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from storystudio.engine.attention.config import ConsistencyConfig
from storystudio.engine.errors import ErrorKind, InputError, ModelError, error_kind
from storystudio.engine.models import catalog as catalog_module
from storystudio.engine.story import controls
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.project import pose
from storystudio.project.pose import Guide, Skeleton
from storystudio.project.script import parse_script

STORY = ("[Ann] a girl with red hair and a green coat\n\n"
         "[Ann] reads a book\n[Ann] walks in the rain\n[Ann] eats an apple\n[Ann] waves goodbye\n"
         "[NC] a quiet street at night\n")
ALWAYS = ConsistencyConfig(schedule=((0, 1.0),))  # consistent attention in every layer at every step
POSE = Guide("pose", ((Skeleton.standing(), (0.1, 0.0, 0.9, 1.0)),))
ARMS_UP = Guide("pose", ((Skeleton(pose.PRESETS["arms up"]), pose.WHOLE_PANEL),))


def fast(net, **kw) -> GenerationSettings:
    base = dict(steps=3, width=64, height=64, seed=5, id_length=2, batch_size=2, consistency=ALWAYS,
                control_models={"pose": str(net)})
    base.update(kw)
    return GenerationSettings(**base)


def story_with(guides: dict[int, Guide | tuple[Guide, ...]]):
    story = parse_script(STORY)
    for number, guide in guides.items():
        story.panels[number - 1].guides = guide if isinstance(guide, tuple) else (guide,)
    return story


def pixels(result) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.image, dtype=np.int16) for k, v in result.images.items()}


class Spy:
    """Records every ControlNet call: its batch, its control picture and the timestep."""

    def __init__(self, net):
        self.calls = []
        self.hook = net.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        self.calls.append(dict(batch=args[0].shape[0], cond=kwargs["controlnet_cond"].detach().clone(),
                               embeds=kwargs["encoder_hidden_states"].detach().clone()))

    def close(self):
        self.hook.remove()


@pytest.fixture(scope="module")
def sdxl_runs(tiny_sdxl, tiny_controlnets):
    """The same story drawn without a pose, with one on a read panel and with one on a reference."""
    engine = StoryPipeline(tiny_sdxl)
    net = tiny_controlnets["sdxl"]
    plain = engine.render(story_with({}), fast(net))
    read = engine.render(story_with({3: POSE}), fast(net))
    write = engine.render(story_with({1: POSE}), fast(net))
    return engine, net, plain, read, write


def test_a_tiny_controlnet_loads_through_the_real_path(tiny_sdxl, tiny_sd15, tiny_controlnets):
    from diffusers import ControlNetModel

    for model, arch in ((tiny_sdxl, "sdxl"), (tiny_sd15, "sd15")):
        net, name = controls.load_controlnet("pose", model.pipe, arch, str(tiny_controlnets[arch]),
                                             torch.device("cpu"), torch.float32)
        assert isinstance(net, ControlNetModel) and name == str(tiny_controlnets[arch])
        assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(ModelError, match="made for another kind of model than this SDXL model"):
        controls.load_controlnet("pose", tiny_sdxl.pipe, "sdxl", str(tiny_controlnets["sd15"]),
                                 torch.device("cpu"), torch.float32)


def test_catalog_controlnets_are_found_in_the_hugging_face_cache(tiny_sdxl, tiny_controlnets, tmp_path, monkeypatch):
    entry = controls.default_entry("pose", "sdxl")
    assert entry is not None and entry.id == "controlnet-openpose-sdxl" and entry.repo.endswith("openpose-sdxl-1.0")
    assert controls.default_entry("pose", "sd15").repo == "lllyasviel/control_v11p_sd15_openpose"
    assert controls.default_entry("depth", "sdxl").control == "depth"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError) as missing:
        controls.find_controlnet("pose", "sdxl")
    assert str(missing.value) == ("Panels with a pose need ControlNet OpenPose for SDXL, which is not on this "
                                  "computer; download it in the Models dialog (or: storystudio models download "
                                  "controlnet-openpose-sdxl).")
    assert error_kind(missing.value) is ErrorKind.MISSING_MODEL
    # the same ControlNet laid out as a download leaves it in the cache: found by its catalog id
    snapshot = tmp_path / "hub" / "models--thibaud--controlnet-openpose-sdxl-1.0" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for file in tiny_controlnets["sdxl"].iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    folder, name = controls.find_controlnet("pose", "sdxl")
    assert folder == snapshot and name == "controlnet-openpose-sdxl"
    net, _ = controls.load_controlnet("pose", tiny_sdxl.pipe, "sdxl", None, torch.device("cpu"), torch.float32)
    assert net.config.cross_attention_dim == tiny_sdxl.pipe.unet.config.cross_attention_dim


def test_a_catalog_entry_must_say_what_a_controlnet_is_guided_by(tmp_path, monkeypatch):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"format": "storystudio-models/1", "models": [dict(
        id="cn", name="A ControlNet", kind="controlnet-sd15", repo="a/b", files=["config.json"], size_bytes=1,
        licence="MIT")]}))
    monkeypatch.setenv(catalog_module.CATALOG_ENV, str(extra))
    with pytest.raises(catalog_module.CatalogError, match="names what it is guided by"):
        catalog_module.catalog()


def test_missing_controlnet_stops_the_story_before_any_work(tiny_sdxl, tmp_path):
    engine = StoryPipeline(tiny_sdxl)
    calls = []
    hook = tiny_sdxl.pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ModelError, match="is not a model folder|names no pose ControlNet"):
            engine.render(story_with({3: POSE}), fast(tmp_path / "nothing-here.safetensors"))
        with pytest.raises(ModelError) as folder:
            engine.render(story_with({3: POSE}), fast(tmp_path))  # a folder without config.json
    finally:
        hook.remove()
    assert "has no config.json" in str(folder.value) and calls == []


def test_a_bad_pose_picture_is_a_plain_error_before_any_work(tiny_sdxl, tiny_controlnets):
    broken = Guide("pose", images=((b"\x89PNG broken", pose.WHOLE_PANEL),))
    with pytest.raises(InputError, match=r"^Panel 3: The pose image is not a picture StoryStudio can read"):
        StoryPipeline(tiny_sdxl).render(story_with({3: broken}), fast(tiny_controlnets["sdxl"]))


def test_a_pose_on_a_panel_changes_it_and_leaves_every_other_picture_bit_identical(sdxl_runs):
    engine, net, plain, read, _ = sdxl_runs
    before, after = pixels(plain), pixels(read)
    writes, reads, _ = engine.plan(story_with({3: POSE}), fast(net))
    # panel 3 shares its UNet call with panel 4 (the same cast, size and text length)
    assert [r.keys for r in reads] == [["panel-3", "panel-4"], ["panel-5"]]
    assert np.abs(after["panel-3"] - before["panel-3"]).mean() > 1.0
    for key in ("panel-1", "panel-2", "panel-4", "panel-5"):
        assert np.array_equal(after[key], before[key]), key


def test_a_pose_on_a_reference_acts_in_the_write_and_its_bank_carries_it(sdxl_runs):
    _, _, plain, _, write = sdxl_runs
    before, after = pixels(plain), pixels(write)
    assert np.abs(after["panel-1"] - before["panel-1"]).mean() > 1.0
    # the other reference and the panels that read Ann's bank see the posed reference's tokens
    for key in ("panel-2", "panel-3", "panel-4"):
        assert not np.array_equal(after[key], before[key]), key
    assert np.array_equal(after["panel-5"], before["panel-5"])  # nobody in it: plain attention, no guide


def test_nothing_is_loaded_for_a_story_without_guides(tiny_sdxl, tiny_controlnets):
    engine = StoryPipeline(tiny_sdxl)
    engine.render(story_with({}), fast(tiny_controlnets["sdxl"], steps=1))
    assert engine._controlnets == {}


def test_the_controlnet_sees_each_guided_picture_in_both_halves_with_its_own_text(sdxl_runs):
    engine, net, *_ = sdxl_runs
    loaded = next(iter(engine._controlnets.values()))[0]
    spy = Spy(loaded)
    try:
        engine.render(story_with({3: POSE}), fast(net, steps=4, control_start=0.25, control_end=0.75))
    finally:
        spy.close()
    assert len(spy.calls) == 2  # steps 1 and 2 of 0..3: diffusers' rule for start/end
    assert all(c["batch"] == 2 for c in spy.calls)  # panel 3 only, unconditional and conditional rows
    want = controls.control_tensor([POSE.render((64, 64))], torch.device("cpu"), torch.float32)
    assert torch.equal(spy.calls[0]["cond"], torch.cat([want, want]))
    uncond, cond = spy.calls[0]["embeds"].chunk(2)
    assert not torch.equal(uncond, cond)  # each half with its own text
    assert [controls.acts_at(i, 4, 0.25, 0.75) for i in range(4)] == [False, True, True, False]
    assert not any(controls.acts_at(i, 3, 0.0, 0.3) for i in range(3))  # a range shorter than one step


def test_strength_zero_leaves_the_panel_as_without_a_pose_and_another_pose_draws_another(sdxl_runs):
    engine, net, plain, read, _ = sdxl_runs
    again = pixels(engine.render(story_with({3: POSE}), fast(net, control_strength=0.0)))
    assert all(np.array_equal(again[k], v) for k, v in pixels(plain).items())
    other = pixels(engine.render(story_with({3: ARMS_UP}), fast(net)))
    assert not np.array_equal(other["panel-3"], pixels(read)["panel-3"])


def test_consistent_attention_still_acts_on_a_posed_panel(sdxl_runs):
    engine, net, _, read, write = sdxl_runs
    without = engine.render(story_with({3: POSE}), fast(net, consistency=ConsistencyConfig(schedule=())))
    assert not np.array_equal(pixels(without)["panel-3"], pixels(read)["panel-3"])  # it reads Ann's bank
    alone = engine.render(story_with({1: POSE}), fast(net, consistency=ConsistencyConfig(schedule=())))
    assert not np.array_equal(pixels(alone)["panel-1"], pixels(write)["panel-1"])  # it writes with the other


def test_png_parameters_record_the_pose(sdxl_runs):
    _, net, plain, read, _ = sdxl_runs
    record = read.images["panel-3"].parameters["controls"]
    assert record == [dict(kind="pose", sha256=pose.picture_digest(POSE.render((64, 64))), strength=1.0,
                           start=0.0, end=1.0, model=str(net))]
    assert "controls" not in read.images["panel-4"].parameters
    assert "controls" not in plain.images["panel-3"].parameters


def test_sd15_with_a_pose(tiny_sd15, tiny_controlnets):
    engine = StoryPipeline(tiny_sd15)
    net = tiny_controlnets["sd15"]
    plain = pixels(engine.render(story_with({}), fast(net, guidance=1.0)))  # without guidance: one half
    posed = pixels(engine.render(story_with({4: ARMS_UP}), fast(net, guidance=1.0)))
    assert not np.array_equal(plain["panel-4"], posed["panel-4"])
    assert all(np.array_equal(plain[k], posed[k]) for k in plain if k != "panel-4")


def test_settings_refuse_a_bad_strength_or_range():
    for kw, words in ((dict(control_strength=-1), "strength"), (dict(control_strength=float("nan")), "strength"),
                      (dict(control_start=0.8, control_end=0.2), "start comes before its end"),
                      (dict(control_end=1.5), "range from 0 to 1")):
        with pytest.raises(InputError, match=words):
            GenerationSettings(**kw).validate()


def test_a_depth_map_through_the_same_path_adds_to_the_pose(sdxl_runs):
    import io

    from PIL import Image

    engine, net, plain, read, _ = sdxl_runs
    ramp = Image.linear_gradient("L").resize((64, 64)).convert("RGB")  # far at the top, near at the bottom
    data = io.BytesIO()
    ramp.save(data, "PNG")
    depth = Guide("depth", images=((data.getvalue(), pose.WHOLE_PANEL),))
    both = engine.render(story_with({3: (POSE, depth)}), fast(net, control_models={"pose": str(net),
                                                                                     "depth": str(net)}))
    after, before = pixels(both), pixels(plain)
    assert not np.array_equal(after["panel-3"], pixels(read)["panel-3"])  # the depth map's residuals add
    assert all(np.array_equal(after[k], before[k]) for k in ("panel-1", "panel-2", "panel-4", "panel-5"))
    kinds = [c["kind"] for c in both.images["panel-3"].parameters["controls"]]
    assert kinds == ["depth", "pose"]
    with pytest.raises(InputError, match="two guides of the same kind"):
        engine.render(story_with({3: (POSE, POSE)}), fast(net))
