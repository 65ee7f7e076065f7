"""The compiled path: no graph break inside a UNet call, no recompile per step, same pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storystudio.engine.models.loading import load_model
from storystudio.engine.story.compile import COMPILED_FLAG, compile_unet, compiled_blocks
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.project.script import parse_script

STORY = "[Ann] a girl with red hair\n\n[Ann] reads\n[Ann] walks\n[Ann] eats\n[Ann] waves\n[NC] a street\n"


@pytest.fixture
def fresh_sdxl(tiny_model_dirs):
    """A model of its own: compiling changes the UNet in place."""
    return load_model(str(tiny_model_dirs["sdxl"]), device="cpu")


def test_consistent_layers_compile_whole_and_once_per_shape(fresh_sdxl, tiny_sdxl):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    # The consistent-attention processors run inside the transformer blocks: compile those, eagerly (the
    # backend does not matter for breaks and recompiles), with fullgraph=True, where any break is an error.
    assert compile_unet(fresh_sdxl.pipe.unet, backend="eager", kinds=("transformer",)) > 0
    graphs_after = []

    def progress(p):
        if p.phase == "plain":  # the last group of each step
            graphs_after.append(counters["stats"]["unique_graphs"])

    settings = GenerationSettings(steps=4, width=64, height=64, seed=11, id_length=2, batch_size=2)
    story = parse_script(STORY)
    compiled = StoryPipeline(fresh_sdxl).render(story, settings, progress=progress)
    torch._dynamo.reset()
    assert not counters["graph_break"]
    # Step 0 (plain attention everywhere) and step 1 (gated) compile what the story needs; later steps reuse it.
    assert graphs_after[1] == graphs_after[-1] and len(graphs_after) == 4
    assert 0 < graphs_after[-1] <= 24  # a bounded few per story: {write, read, plain} x {step 0, later} x shapes
    eager = StoryPipeline(tiny_sdxl).render(story, settings)
    for key, image in eager.images.items():
        diff = np.abs(np.asarray(image.image, dtype=np.int16) - np.asarray(compiled.images[key].image, dtype=np.int16))
        assert diff.max() <= 1, key  # the same pictures


def test_compile_unet_compiles_the_repeated_blocks_once(fresh_sdxl, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: calls.append((type(self).__name__, kw)))
    unet = fresh_sdxl.pipe.unet
    n = compile_unet(unet, backend="eager")
    assert n == len(calls) == len(compiled_blocks(unet)) > 0
    assert {name for name, _ in calls} == {"BasicTransformerBlock", "ResnetBlock2D"}
    assert all(kw["fullgraph"] and kw["dynamic"] is False for _, kw in calls)
    assert getattr(unet, COMPILED_FLAG) == ("eager", None)
    assert compile_unet(unet, backend="eager") == 0  # already compiled


def test_the_compile_cache_is_kept_in_storystudios_cache_folder(tmp_path, monkeypatch):
    from storystudio.engine.story.compile import use_compile_cache

    monkeypatch.setenv("STORYSTUDIO_COMPILE_CACHE", str(tmp_path / "cc"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert use_compile_cache() == tmp_path / "cc" and (tmp_path / "cc").is_dir()
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cc")


def test_storystudios_cache_setting_wins_over_torchs_and_torchs_over_the_default(tmp_path, monkeypatch):
    import os

    from storystudio.engine.story.compile import use_compile_cache

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch"))
    monkeypatch.setenv("STORYSTUDIO_COMPILE_CACHE", str(tmp_path / "ours"))
    assert use_compile_cache() == tmp_path / "ours" and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "ours")
    monkeypatch.delenv("STORYSTUDIO_COMPILE_CACHE")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert use_compile_cache() == tmp_path / "torch"  # the user's own torch setting is kept
