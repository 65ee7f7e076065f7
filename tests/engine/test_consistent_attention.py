"""Consistent self-attention: equal to plain attention where it should be, different where it must be."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from storystudio.engine.attention.consistent import ConsistencyConfig, ConsistentAttention, ConsistentAttnProcessor

ALWAYS = ((0, 1.0),)  # consistent attention in every layer at every step


def unet_inputs(pipe, batch: int, seed: int = 0, size: int = 64):
    g = torch.Generator().manual_seed(seed)
    unet = pipe.unet
    lat = torch.randn(batch, 4, size // 8, size // 8, generator=g)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":
        pooled = pipe.text_encoder_2.config.projection_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, generator=g),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, dtype=torch.float32),
        }
    return lat, text, kwargs


@torch.no_grad()
def unet_out(pipe, lat, text, kwargs, t=500):
    return pipe.unet(lat, torch.tensor(t), encoder_hidden_states=text, return_dict=False, **kwargs)[0]


@torch.no_grad()
def test_rate_zero_equals_diffusers_sdpa(tiny_model):
    pipe = tiny_model.pipe
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    lat, text, kw = unet_inputs(pipe, 8)
    expected = unet_out(pipe, lat, text, kw)
    cfg = ConsistencyConfig(rate_coarse=0.0, rate_fine=0.0, schedule=ALWAYS)
    with ConsistentAttention(pipe.unet, cfg) as csa:
        with csa.write("A", 4, sample_seed=1) as w:
            got = unet_out(pipe, lat, text, kw)
        assert csa.calls["plain"] > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert w["bank"].bytes_per_step == 0  # nothing sampled, nothing banked


@torch.no_grad()
def test_schedule_off_equals_plain_and_on_differs(tiny_model):
    pipe = tiny_model.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=())) as csa:
        with csa.plain(4):
            plain = unet_out(pipe, lat, text, kw)
        with csa.write("A", 4, sample_seed=1):
            off = unet_out(pipe, lat, text, kw)
        assert csa.calls["consistent"] == 0
    torch.testing.assert_close(off, plain, rtol=1e-5, atol=1e-5)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        with csa.write("A", 4, sample_seed=1):
            on = unet_out(pipe, lat, text, kw)
        assert csa.calls["consistent"] == len(csa.layers)
    assert (on - plain).abs().max() > 1e-4


@torch.no_grad()
def test_default_schedule_is_plain_at_step_zero(tiny_sdxl):
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    with ConsistentAttention(pipe.unet) as csa:  # reference defaults: 0 before step 1, then 0.7, 0.9 from 20
        assert csa.config.probability(0) == 0 and csa.config.probability(1) == 0.7
        assert csa.config.probability(19) == 0.7 and csa.config.probability(20) == 0.9
        with csa.write("A", 4, sample_seed=1):
            unet_out(pipe, lat, text, kw)
            assert csa.calls["consistent"] == 0
            for _ in range(30):
                unet_out(pipe, lat, text, kw)
        share = csa.calls["consistent"] / (30 * len(csa.layers))
    assert 0.6 < share < 0.95


def test_rates_by_resolution_and_layers(tiny_sdxl, tiny_sd15):
    # SDXL shape: up_blocks.0 is the coarsest level with attention ("sa32"), up_blocks.1 finer ("sa64").
    cfg = ConsistencyConfig(rate_coarse=0.25, rate_fine=0.75)
    with ConsistentAttention(tiny_sdxl.pipe.unet, cfg) as csa:
        rates = {name.split(".")[1]: info.rate for name, info in csa.layers.items()}
        assert all(n.startswith("up_blocks") and n.endswith("attn1") for n in csa.layers)
    assert rates == {"0": 0.25, "1": 0.75}
    with ConsistentAttention(tiny_sd15.pipe.unet, cfg) as csa:  # SD1.5 shape: attention in up_blocks 1 and 2
        rates = {name.split(".")[1]: info.rate for name, info in csa.layers.items()}
    assert rates == {"1": 0.25, "2": 0.75}
    with pytest.raises(ValueError, match="between 0 and 1"):
        ConsistencyConfig(rate_fine=1.5)


def test_unet_left_as_it_was(tiny_model):
    unet = tiny_model.pipe.unet
    before = dict(unet.attn_processors)
    hooks_before = len(unet._forward_pre_hooks)
    with ConsistentAttention(unet) as csa:
        assert any(isinstance(p, ConsistentAttnProcessor) for p in unet.attn_processors.values())
        assert csa.layers
    after = unet.attn_processors
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    assert len(unet._forward_pre_hooks) == hooks_before


@torch.no_grad()
def test_cfg_halves_never_mix(tiny_sdxl):
    """The unconditional half must not see the conditional half's tokens, in write and read."""
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    lat2 = lat.clone()
    lat2[4:] += torch.randn_like(lat2[4:])  # change only the conditional half
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        with csa.write("A", 4, sample_seed=1):
            a = unet_out(pipe, lat, text, kw)
        with csa.write("A", 4, sample_seed=1) as w:
            b = unet_out(pipe, lat2, text, kw)
        torch.testing.assert_close(a[:4], b[:4])
        assert (a[4:] - b[4:]).abs().max() > 1e-3
        # read: the bank's conditional half differs, the unconditional half must not move
        lp, tp, kp = unet_inputs(pipe, 2, seed=5)
        with csa.write("A", 4, sample_seed=1) as w1:
            unet_out(pipe, lat, text, kw)
        with csa.read([w1["bank"]], 1, "cpu"):
            r1 = unet_out(pipe, lp, tp, kp)
        with csa.read([w["bank"]], 1, "cpu"):
            r2 = unet_out(pipe, lp, tp, kp)
    torch.testing.assert_close(r1[:1], r2[:1])
    assert (r1[1:] - r2[1:]).abs().max() > 1e-4


@torch.no_grad()
def test_each_image_borrows_only_from_the_others():
    """On one attention layer: image i's keys are its own tokens plus samples of images j != i."""
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    seen = {}

    class FakeState:
        n_images = 3
        step = 1
        config = ConsistencyConfig(schedule=ALWAYS)

        def sample(self, tokens, k, device):
            return torch.stack([torch.arange(k) + i for i in range(3)])  # image i: tokens i..i+k-1

        def gate(self, layer):
            return True

        def others_index(self, n, device):
            return torch.tensor([[j for j in range(n) if j != i] for i in range(n)])

        def put_bank(self, layer, tokens):
            seen["bank"] = tokens

        calls = {"consistent": 0, "plain": 0}

    from storystudio.engine.attention.consistent import LayerInfo, Phase

    state = FakeState()
    state.phase = Phase.WRITE
    proc = ConsistentAttnProcessor(state, LayerInfo("x", 0, 0.5))
    x = torch.randn(3, 10, 16)  # no CFG: one half of three images
    captured = {}
    original = proc._attend
    proc._attend = lambda a, q, k, v, b, m=None: captured.update(k=k) or original(a, q, k, v, b, m)
    proc(attn, x)
    keys = captured["k"]
    assert keys.shape == (3, 10 + 2 * 5, 16)
    own = attn.to_k(x)
    for i in range(3):
        torch.testing.assert_close(keys[i, :10], own[i])
        borrowed = keys[i, 10:].view(2, 5, 16)
        for slot, j in enumerate(j for j in range(3) if j != i):
            torch.testing.assert_close(borrowed[slot], own[j, j : j + 5])
    assert seen["bank"].shape == (1, 3 * 5, 16)
    torch.testing.assert_close(seen["bank"][0, :5], x[0, 0:5])


def pairwise(t: torch.Tensor) -> float:
    pairs = list(itertools.combinations(range(t.shape[0]), 2))
    return sum((t[i] - t[j]).pow(2).mean().item() for i, j in pairs) / len(pairs)


@torch.no_grad()
def test_write_makes_references_alike(tiny_model):
    """Same seeds, same prompt: with consistent attention the references' attention outputs converge."""
    pipe = tiny_model.pipe
    lat = torch.cat([torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in range(4)])
    spread = {}
    for mode in ("plain", "write"):
        outputs = {}
        with ConsistentAttention(pipe.unet) as csa:
            hooks = [
                pipe.unet.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: outputs.__setitem__(n, o))
                for n in csa.layers
            ]
            ctx = csa.plain(4) if mode == "plain" else csa.write("A", 4, sample_seed=3)
            with ctx:
                final = pipe(prompt=["a girl"] * 4, num_inference_steps=6, guidance_scale=5.0, height=64, width=64,
                             latents=lat.clone(), output_type="latent").images
            for h in hooks:
                h.remove()
        spread[mode] = sum(pairwise(o[4:]) for o in outputs.values()) / len(outputs)  # conditional half
        spread[mode + "_final"] = final
    assert spread["write"] < 0.5 * spread["plain"]
    assert not torch.equal(spread["write_final"], spread["plain_final"])


@torch.no_grad()
def test_read_with_empty_bank_equals_plain(tiny_model):
    pipe = tiny_model.pipe
    lat8, text8, kw8 = unet_inputs(pipe, 8)
    lat, text, kw = unet_inputs(pipe, 2, seed=9)
    empty = ConsistencyConfig(rate_coarse=0.0, rate_fine=0.0, schedule=ALWAYS)
    with ConsistentAttention(pipe.unet, empty) as csa:
        with csa.write("A", 4, sample_seed=1) as w:
            for _ in range(3):
                unet_out(pipe, lat8, text8, kw8)
        with csa.plain(1):
            plain = [unet_out(pipe, lat, text, kw) for _ in range(3)]
        with csa.read([w["bank"]], 1, "cpu"):
            read = [unet_out(pipe, lat, text, kw) for _ in range(3)]
    for p, r in zip(plain, read):
        torch.testing.assert_close(r, p, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_read_uses_the_bank_of_every_character(tiny_sdxl):
    pipe = tiny_sdxl.pipe
    lat8, text8, kw8 = unet_inputs(pipe, 8)
    lat, text, kw = unet_inputs(pipe, 2, seed=9)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        banks = []
        for name, seed in (("A", 1), ("B", 2)):
            with csa.write(name, 4, sample_seed=seed) as w:
                unet_out(pipe, lat8 + seed, text8, kw8)
            banks.append(w["bank"])
        lengths = []
        proc_cls = ConsistentAttnProcessor
        original = proc_cls._attend

        def spy(self, attn, q, k, v, b, m=None):
            lengths.append((self.layer.name, q.shape[1], k.shape[1]))
            return original(self, attn, q, k, v, b, m)

        proc_cls._attend = spy
        try:
            results = {}
            for label, chosen in (("A", banks[:1]), ("B", banks[1:]), ("AB", banks)):
                lengths.clear()
                with csa.read(chosen, 1, "cpu"):
                    results[label] = unet_out(pipe, lat, text, kw)
                results[label + "_lengths"] = list(lengths)
        finally:
            proc_cls._attend = original
    for (name, q, kab), (_, _, ka), (_, _, kb) in zip(results["AB_lengths"], results["A_lengths"], results["B_lengths"]):
        assert kab - q == (ka - q) + (kb - q) > 0  # both banks, each complete
    assert not torch.allclose(results["AB"], results["A"]) and not torch.allclose(results["AB"], results["B"])


@torch.no_grad()
def test_token_samples_are_seeded_and_shared_within_a_step(tiny_sdxl):
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 6)
    csa = ConsistentAttention(pipe.unet, seed=4).install()
    try:
        with csa.write("A", 3, sample_seed=7):
            unet_out(pipe, lat, text, kw)
            csa.step, csa._draw = 2, None
            a = csa.sample(64, 32, torch.device("cpu"))
            assert csa.sample(64, 32, torch.device("cpu")) is a  # same resolution, same step: same draw
            csa.step, csa._draw = 3, None
            b = csa.sample(64, 32, torch.device("cpu"))
        with csa.write("A", 3, sample_seed=7):
            unet_out(pipe, lat, text, kw)
            csa.step, csa._draw = 2, None
            again = csa.sample(64, 32, torch.device("cpu"))
    finally:
        csa.uninstall()
    assert torch.equal(a, again) and not torch.equal(a, b)
    assert a.shape == (3, 32) and all(len(set(row.tolist())) == 32 for row in a)  # no repeats within an image


@torch.no_grad()
def test_without_guidance(tiny_sd15):
    """guidance <= 1 means no CFG batch: one half; write and read still work."""
    pipe = tiny_sd15.pipe
    lat4, text4, kw4 = unet_inputs(pipe, 4)
    lat, text, kw = unet_inputs(pipe, 1, seed=3)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        with csa.write("A", 4, sample_seed=1) as w:
            out = unet_out(pipe, lat4, text4, kw4)
        bank = w["bank"]
        assert all(slot.shape[0] == 1 for slot in bank.slots.values())
        with csa.read([bank], 1, "cpu"):
            read = unet_out(pipe, lat, text, kw)
        with csa.plain(1):
            plain = unet_out(pipe, lat, text, kw)
    assert torch.isfinite(out).all() and not torch.allclose(read, plain)


@torch.no_grad()
def test_sd21_shaped_unet():
    """SD2.x: linear projections, per-block head counts, 1024-wide text (here scaled down)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8,
        attention_head_dim=(2, 4, 4), use_linear_projection=True, cross_attention_dim=48,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    unet.set_attn_processor(AttnProcessor2_0())
    g = torch.Generator().manual_seed(1)
    lat, text = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 77, 48, generator=g)

    def run():
        return unet(lat, torch.tensor(400), encoder_hidden_states=text, return_dict=False)[0]

    plain = run()
    with ConsistentAttention(unet, ConsistencyConfig(rate_coarse=0, rate_fine=0, schedule=ALWAYS)) as csa:
        with csa.write("A", 2, sample_seed=1):
            torch.testing.assert_close(run(), plain, rtol=1e-5, atol=1e-5)
    with ConsistentAttention(unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        assert {n.split(".")[1] for n in csa.layers} == {"1", "2"}
        with csa.write("A", 2, sample_seed=1) as w:
            written = run()
        with csa.read([w["bank"]], 2, "cpu"):
            read = run()
    assert (written - plain).abs().max() > 1e-4 and (read - plain).abs().max() > 1e-4
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
