"""Regions: in a shared panel each character's box reads only that character's bank and text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from storystudio.engine.attention.config import ConsistencyConfig
from storystudio.engine.attention.consistent import ConsistentAttention, StepBank
from storystudio.engine.attention.regions import (
    LevelRegions,
    Photo,
    RegionalCrossAttention,
    RegionLayout,
    level_grid,
    token_labels,
)
from storystudio.engine.models.random_weights import build_pipeline
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.engine.story.regions import background_prompt, region_prompt
from storystudio.project.regions import Region, default_regions, panel_regions
from storystudio.project.script import parse_script

ALWAYS = ConsistencyConfig(schedule=((0, 1.0),))
SIZE = 256  # latent 32x32: 8x8 tokens at the coarsest level of the tiny UNet
BOXES = [[(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)], [(0.1, 0.2, 0.4, 0.9), (0.6, 0.1, 0.95, 0.8)]]


@pytest.fixture(scope="module")
def pipe():
    return build_pipeline("sdxl")


# ---- geometry ----------------------------------------------------------------------------------------------

def test_token_labels_follow_the_boxes_later_in_front_and_never_empty():
    labels = token_labels([(0.0, 0.0, 0.5, 1.0), (0.25, 0.0, 1.0, 0.5)], (4, 4)).view(4, 4)
    assert labels.tolist() == [[1, 2, 2, 2], [1, 2, 2, 2], [1, 1, 0, 0], [1, 1, 0, 0]]
    tiny = token_labels([(0.60, 0.60, 0.61, 0.61)], (4, 4)).view(4, 4)  # holds no token centre
    assert tiny.sum() == 1 and tiny[2, 2] == 1


def test_regions_scale_with_the_panels_shape():
    box = [(0.25, 0.0, 0.75, 1.0)]
    square = token_labels(box, (8, 8)).view(8, 8)
    wide = token_labels(box, (8, 16)).view(8, 16)
    assert (square == 1).float().mean() == (wide == 1).float().mean() == 0.5
    assert wide[:, 4:12].all() and not wide[:, :4].any()


def test_default_regions_follow_tag_order_and_stored_boxes_win():
    assert default_regions(["Bo", "Ann"]) == [Region("Bo", (0.0, 0.0, 0.5, 1.0)), Region("Ann", (0.5, 0.0, 1.0, 1.0))]
    assert default_regions(["Ann"]) == []
    mine = Region("Ann", (0.1, 0.1, 0.3, 0.9))
    got = panel_regions(["Ann", "Bo", "Cy"], [mine, Region("Zed", (0, 0, 1, 1))])
    assert got[-1] == mine and {r.character for r in got} == {"Ann", "Bo", "Cy"}
    assert Region("Ann", (0.0, 0.0, 0.5, 1.0)).moved(0.8, -1).box == (0.5, 0.0, 1.0, 1.0)


def test_region_and_background_prompts():
    story = parse_script("[Ann] a girl with red hair\n[Bo] a tall man\n\n[Ann] and [Bo] laugh in a cafe\n")
    panel = story.panels[0]
    assert background_prompt(story, panel) == "Ann and Bo laugh in a cafe"
    assert region_prompt(story, panel, "Ann") == "a girl with red hair and Bo laugh in a cafe"
    assert region_prompt(story, panel, "Bo") == "Ann and a tall man laugh in a cafe"


def test_layout_indices_cover_every_token_once():
    layout = RegionLayout(BOXES, (32, 32), [4], halves=2, device="cpu")
    level = layout.level(4)
    n_tokens = 2 * 64
    gathered = torch.cat(level.queries)
    assert gathered.unique().numel() == gathered.numel()  # no token in two regions
    labels = torch.stack([token_labels(b, level_grid(4, (32, 32))) for b in BOXES]).reshape(-1)
    for r, index in enumerate(level.queries):
        assert (labels[index] == r + 1).all() and index.numel() == (labels == r + 1).sum()
    assert level.inverse.shape == (n_tokens,) and (level.inverse[labels == 0] == 0).all()
    assert level.rows_inverse.shape == (4, 64)  # both guidance halves


# ---- self-attention: each region reads its own character's bank --------------------------------------------

def _banks(csa, unet, halves, poison=None):
    """Two characters' banks for every layer; ``poison`` (0 or 1) gets NaN values: who reads it turns NaN."""
    g = torch.Generator().manual_seed(3)
    banks = []
    for who in range(2):
        keys, values = [], []
        for name in csa.layers:
            width = unet.get_submodule(name).to_k.out_features
            keys.append(torch.randn(halves, 2, 5 + who, width, generator=g))
            v = torch.randn(halves, 2, 5 + who, width, generator=g)
            values.append(v.fill_(float("nan")) if poison == who else v)
        banks.append(StepBank(keys, values))
    return banks


def _layer_out(pipe, csa, name, hidden, banks, n, halves, layout=None):
    attn = pipe.unet.get_submodule(name)
    proc = pipe.unet.attn_processors[name + ".processor"]
    with torch.no_grad():
        if banks is None:
            with csa.plain(n):
                return proc(attn, hidden)
        with csa.read(banks, n, halves, regions=layout):
            return proc(attn, hidden)


@pytest.mark.parametrize("halves", [2, 1])
def test_queries_read_only_their_characters_bank_and_background_none(pipe, halves):
    unet = pipe.unet
    csa = ConsistentAttention(unet, ALWAYS, seed=0)
    with csa:
        csa.start(1, "cpu")
        csa.begin_step(0)
        layout = RegionLayout(BOXES, (32, 32), {i.scale for i in csa.layers.values()}, halves, "cpu")
        for name, info in csa.layers.items():
            grid = level_grid(info.scale, (32, 32))
            tokens = grid[0] * grid[1]
            labels = torch.stack([token_labels(b, grid) for b in BOXES]).repeat(halves, 1)  # (batch, tokens)
            hidden = torch.randn(halves * 2, tokens, unet.get_submodule(name).to_q.in_features,
                                 generator=torch.Generator().manual_seed(info.index))
            for poison in (0, 1):  # NaN values in one bank: exactly the queries of its region read it
                out = _layer_out(pipe, csa, name, hidden, _banks(csa, unet, halves, poison), 2, halves, layout)
                nan = out.isnan().any(-1)
                assert torch.equal(nan, labels == poison + 1), name
            clean = _banks(csa, unet, halves)
            out = _layer_out(pipe, csa, name, hidden, clean, 2, halves, layout)
            plain = _layer_out(pipe, csa, name, hidden, None, 2, halves)
            alone = [_layer_out(pipe, csa, name, hidden, [b], 2, halves) for b in clean]
            background = labels == 0
            assert torch.equal(out[background], plain[background])  # own tokens only, bit for bit
            for r in (0, 1):  # a region reads exactly as a panel of its character alone would
                inside = labels == r + 1
                torch.testing.assert_close(out[inside], alone[r][inside], atol=2e-5, rtol=1e-4)


# ---- cross-attention: each region sees its own text (and photo) ---------------------------------------------

def _photo_adds(attn, hidden, photo_kv, photo):
    """What a photo adds to a cross-attention layer's output, computed by hand: its strength times the
    attention of the layer's queries over the photo's tokens (through the adapter's projections), through
    the output projection without its bias."""
    def heads(t):
        return t.view(t.shape[0], t.shape[1], attn.heads, -1).transpose(1, 2)

    q, k, v = heads(attn.to_q(hidden)), heads(photo_kv[0](photo.tokens)), heads(photo_kv[1](photo.tokens))
    weights = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1)
    seen = (weights @ v).transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
    return torch.nn.functional.linear(photo.strength * seen, attn.to_out[0].weight) / attn.rescale_output_factor


@pytest.mark.parametrize("chunks", [1, 2], ids=["texts as long as the prompt", "texts of two chunks"])
def test_regional_cross_attention_gives_each_region_its_text_and_photo(pipe, chunks):
    unet = pipe.unet
    g = torch.Generator().manual_seed(5)
    names = [n.removesuffix(".processor") for n in unet.attn_processors if n.endswith("attn2.processor")]
    photo_kv = {}
    for n in names:
        attn = unet.get_submodule(n)
        photo_kv[n] = (torch.nn.Linear(attn.to_k.in_features, attn.to_k.out_features, bias=False),
                       torch.nn.Linear(attn.to_v.in_features, attn.to_v.out_features, bias=False))
    cross = RegionalCrossAttention(unet, photo_kv)
    halves, n, width = 2, 2, unet.config.cross_attention_dim
    main = torch.randn(halves * n, 77, width, generator=g)
    texts = [torch.randn(halves * n, 77 * chunks, width, generator=g) for r in range(2)]
    stacked = torch.stack(texts, 1).reshape(halves * n * 2, 77 * chunks, width)  # row b's region r at b * 2 + r
    with cross:
        layout = RegionLayout(BOXES, (32, 32), cross.levels_needed, halves, "cpu")
        for name in names:
            scale = cross.scales[name]
            grid = level_grid(scale, (32, 32))
            tokens = grid[0] * grid[1]
            labels = torch.stack([token_labels(b, grid) for b in BOXES]).repeat(halves, 1)
            attn = unet.get_submodule(name)
            proc = unet.attn_processors[name + ".processor"]
            hidden = torch.randn(halves * n, tokens, attn.to_q.in_features, generator=g)
            base = AttnProcessor2_0()
            with torch.no_grad():
                assert torch.equal(proc(attn, hidden, main), base(attn, hidden, main))  # outside a call: unchanged
                with cross.call(layout, stacked):
                    out = proc(attn, hidden, main)
                expected = [base(attn, hidden, main)] + [base(attn, hidden, t) for t in texts]
                for r in range(3):
                    torch.testing.assert_close(out[labels == r], expected[r][labels == r], atol=2e-5, rtol=1e-4)
                tokens = torch.zeros(halves * n, 2, 4, width)
                tokens[:, 1] = float("nan")  # Bo's photo poisoned, Ann has none
                poisoned = Photo(tokens.view(-1, 4, width), torch.tensor([0.0, 0.7]).repeat(halves * n).view(-1, 1, 1))
                with cross.call(layout, stacked, poisoned):
                    out = proc(attn, hidden, main)
                assert torch.equal(out.isnan().any(-1), labels == 2), name  # the photo acts only in its region
                whole = Photo(torch.randn(halves * n, 4, width, generator=g), 0.5)
                seen = _photo_adds(attn, hidden, photo_kv[name], whole)
                with cross.call(photo=whole):  # a photo on every token (a picture of its character alone)
                    torch.testing.assert_close(proc(attn, hidden, main), expected[0] + seen, atol=2e-5, rtol=1e-4)
    assert all(type(p) is not type(cross) for p in unet.attn_processors.values())


# ---- the story ----------------------------------------------------------------------------------------------

STORY = ("[Ann] a girl with red hair and a green coat\n[Bo] a tall man with a grey beard\n\n"
         "[Ann] reads a book\n[Bo] paints a fence\n[Ann] eats an apple\n[Ann] and [Bo] laugh together\n"
         "[Bo] and [Ann] walk home\n")
SHARED = (3, 4)


def fast(**kw) -> GenerationSettings:
    return GenerationSettings(**dict(dict(steps=2, width=64, height=64, seed=4, id_length=2, consistency=ALWAYS), **kw))


@pytest.fixture(scope="module")
def shared(tiny_sd15):
    """The story drawn with regions (every attend_regions call recorded) and without."""
    story = parse_script(STORY)
    engine = StoryPipeline(tiny_sd15)
    calls = []
    original = LevelRegions.attend

    def spy(self, q, banks, scale, kernel):
        calls.append(([i.numel() for i in self.queries], [k.shape[2] for k, _ in banks], q.shape[2]))
        return original(self, q, banks, scale, kernel)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(LevelRegions, "attend", spy)
        on = engine.render(story, fast())
    return story, on, engine.render(story, fast(regions=False)), calls


def test_a_shared_panel_calls_one_attention_per_region_with_one_characters_bank(shared):
    story, result, _, calls = shared
    assert calls, "the shared panels did not read by regions"
    for queries, bank_sizes, total in calls:
        assert len(queries) == len(bank_sizes) == 2 and sum(queries) <= total
        # Ann has two references and Bo one: her region reads twice his tokens, never both banks together.
        assert bank_sizes[0] == 2 * bank_sizes[1] > 0
    shared_panel = result.images[story.panels[3].key]
    assert [r["character"] for r in shared_panel.parameters["regions"]] == ["Ann", "Bo"]
    assert shared_panel.parameters["prompt"].count("a girl with red hair") == 0  # looks live in the regions
    left = result.images[story.panels[4].key].parameters["regions"]
    assert left[1]["character"] == "Bo" and left[1]["box"][0] == 0.0  # first tag on the left


def test_regions_change_only_the_shared_panels(shared):
    story, on, off, _ = shared
    for i, panel in enumerate(story.panels):
        same = np.array_equal(np.asarray(on.images[panel.key].image), np.asarray(off.images[panel.key].image))
        assert same == (i not in SHARED), i
    assert "regions" not in off.images[story.panels[3].key].parameters


def test_regions_compile_whole_and_once_per_shape(tiny_model_dirs):
    """Shared panels under torch.compile (fullgraph: any graph break is an error): no break, and no
    recompile after the first steps."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from storystudio.engine.models.loading import load_model
    from storystudio.engine.story.compile import compile_unet

    model = load_model(str(tiny_model_dirs["sdxl"]), device="cpu")  # its own: compiling changes the UNet
    torch._dynamo.reset()
    counters.clear()
    assert compile_unet(model.pipe.unet, backend="eager", kinds=("transformer",)) > 0
    graphs = []
    story = parse_script(STORY)
    StoryPipeline(model).render(story, fast(steps=4, id_length=1, consistency=ConsistencyConfig()),
                                progress=lambda p: graphs.append(counters["stats"]["unique_graphs"]))
    torch._dynamo.reset()
    assert not counters["graph_break"]
    per_step = len(graphs) // 4
    assert graphs[2 * per_step - 1] == graphs[-1] > 0  # steps 2 and 3 compile nothing new
