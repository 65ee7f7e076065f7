"""Consistent self-attention: the reference method's function, plain where it should be, gated per layer and step."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from storystudio.engine.attention.config import ConsistencyConfig
from storystudio.engine.attention.consistent import (
    ConsistentAttention,
    ConsistentAttnProcessor,
    attend_with_lse,
    level_tokens,
    merge_attention,
)

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
    return pipe.unet(lat, torch.tensor(t), encoder_hidden_states=text, return_dict=False)[0] if not kwargs else \
        pipe.unet(lat, torch.tensor(t), encoder_hidden_states=text, return_dict=False, **kwargs)[0]


def hw(size: int = 64) -> tuple[int, int]:
    return (size // 8, size // 8)


def started(csa: ConsistentAttention, steps: int = 1, step: int = 0) -> ConsistentAttention:
    csa.start(steps, "cpu")
    csa.begin_step(step)
    return csa


class LayerSpy:
    """Inputs and outputs of every consistent-attention layer, by layer name."""

    def __init__(self, unet, names):
        self.inputs, self.outputs = {}, {}
        self.hooks = [unet.get_submodule(n).register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(module, args, out):
            self.inputs[name] = args[0].detach().clone()
            self.outputs[name] = out.detach().clone()
        return hook

    def remove(self):
        for h in self.hooks:
            h.remove()


# ---- the reference method, written plainly (one image at a time, one softmax over all keys) ------------


def heads(attn, t):
    b, n, c = t.shape
    return t.view(b, n, attn.heads, c // attn.heads).transpose(1, 2)


def reference_attention(attn, x, extra_k=None, extra_v=None):
    """Self-attention of ``x`` (B, T, C) whose keys/values are extended per image by ``extra_k/v`` (B, N, C)."""
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
    if extra_k is not None:
        k, v = torch.cat([k, extra_k], 1), torch.cat([v, extra_v], 1)
    scores = heads(attn, q) @ heads(attn, k).transpose(-1, -2) * attn.scale
    out = (scores.softmax(-1) @ heads(attn, v)).transpose(1, 2).reshape(x.shape)
    return attn.to_out[0](out)


def reference_write(attn, x, halves, n, samples):
    """StoryDiffusion's write: image i of a half borrows the sampled tokens of the other images j != i."""
    k, v = attn.to_k(x), attn.to_v(x)
    tokens = x.shape[1]
    outs = []
    for h in range(halves):
        for i in range(n):
            others = [j for j in range(n) if j != i]
            ek = torch.cat([k[h * n + j, samples[j]] for j in others])[None]
            ev = torch.cat([v[h * n + j, samples[j]] for j in others])[None]
            outs.append(reference_attention(attn, x[h * n + i : h * n + i + 1], ek, ev))
    assert outs[0].shape[1] == tokens
    return torch.cat(outs)


@torch.no_grad()
def test_write_and_read_are_the_reference_method(tiny_sdxl):
    """Same samples in, same outputs: every consistent layer of a write and of a read, against the plain formula."""
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    lp, tp, kp = unet_inputs(pipe, 4, seed=3)  # two panels read together, with guidance
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        started(csa)
        spy = LayerSpy(pipe.unet, csa.layers)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as bank:
            samples = {info.scale: csa.slots[info.index].samples.clone() for info in csa.layers.values()}
            unet_out(pipe, lat, text, kw)
        written = dict(spy.outputs), dict(spy.inputs)
        with csa.read([bank], 2, halves=2):
            unet_out(pipe, lp, tp, kp)
        spy.remove()
        for name, info in csa.layers.items():
            attn = pipe.unet.get_submodule(name)
            x = written[1][name]
            expected = reference_write(attn, x, 2, 4, samples[info.scale])
            torch.testing.assert_close(written[0][name], expected, rtol=2e-5, atol=2e-6)
            # the panels read every reference's sampled tokens of their own half, projected once
            xr = spy.inputs[name]
            k, v = attn.to_k(x), attn.to_v(x)
            idx = samples[info.scale]
            per_half = []
            for h in range(2):
                ek = torch.cat([k[h * 4 + j, idx[j]] for j in range(4)])
                ev = torch.cat([v[h * 4 + j, idx[j]] for j in range(4)])
                per_half.append((ek, ev))
            expected_read = torch.cat([reference_attention(attn, xr[b : b + 1], per_half[b // 2][0][None],
                                                           per_half[b // 2][1][None]) for b in range(4)])
            torch.testing.assert_close(spy.outputs[name], expected_read, rtol=2e-5, atol=2e-6)


def test_merging_two_attention_calls_is_one_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=g) for _ in range(3))
    ek, ev = torch.randn(2, 3, 6, 8, generator=g), torch.randn(2, 3, 6, 8, generator=g)
    own, own_lse = attend_with_lse(q, k, v, 0.3, "cpu-flash")
    extra, extra_lse = attend_with_lse(q, ek, ev, 0.3, "cpu-flash")
    both = torch.nn.functional.scaled_dot_product_attention(q, torch.cat([k, ek], 2), torch.cat([v, ev], 2), scale=0.3)
    torch.testing.assert_close(merge_attention(own, own_lse, extra, extra_lse, torch.tensor(0.0)), both)
    off = merge_attention(own, own_lse, extra, extra_lse, torch.tensor(float("-inf")))
    assert torch.equal(off, own)  # a gate that is off (log -inf) gives exactly the own tokens' attention
    math_out, math_lse = attend_with_lse(q, k, v, 0.3, "math")
    torch.testing.assert_close(math_out, own)
    torch.testing.assert_close(math_lse, own_lse)


@torch.no_grad()
def test_rate_zero_equals_diffusers_sdpa(tiny_model):
    pipe = tiny_model.pipe
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    lat, text, kw = unet_inputs(pipe, 8)
    expected = unet_out(pipe, lat, text, kw)
    cfg = ConsistencyConfig(rate_coarse=0.0, rate_fine=0.0, schedule=ALWAYS)
    with ConsistentAttention(pipe.unet, cfg) as csa:
        started(csa)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as bank:
            got = unet_out(pipe, lat, text, kw)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert all(k.shape[2] == 0 for k in bank.keys)  # nothing sampled, nothing banked


@torch.no_grad()
def test_schedule_off_equals_plain_and_on_differs(tiny_model):
    pipe = tiny_model.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=())) as csa:
        started(csa)
        with csa.plain(4):
            plain = unet_out(pipe, lat, text, kw)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu"):
            off = unet_out(pipe, lat, text, kw)
    torch.testing.assert_close(off, plain, rtol=1e-5, atol=1e-5)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        started(csa)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu"):
            on = unet_out(pipe, lat, text, kw)
    assert (on - plain).abs().max() > 1e-4


def layer_effects(pipe, csa, run_call) -> dict[str, bool]:
    """Per consistent layer: does it differ from plain attention on the same input in this call?"""
    spy = LayerSpy(pipe.unet, csa.layers)
    run_call()
    spy.remove()
    effects = {}
    for name in csa.layers:
        attn = pipe.unet.get_submodule(name)
        plain = AttnProcessor2_0()(attn, spy.inputs[name])
        effects[name] = not torch.allclose(spy.outputs[name], plain, rtol=1e-5, atol=1e-6)
    return effects


@torch.no_grad()
def test_every_phase_of_the_schedule_reaches_the_layers(tiny_sdxl):
    """Steps 1..19 at probability 0, from step 20 at 1: the processors act exactly from step 20, in write and read."""
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    lp, tp, kp = unet_inputs(pipe, 2, seed=9)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=((1, 0.0), (20, 1.0)))) as csa:
        csa.start(23, "cpu")
        seen = {}
        for step in (0, 5, 19, 20, 22):
            csa.begin_step(step)
            box = {}

            def write():
                with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as bank:
                    unet_out(pipe, lat, text, kw)
                box["bank"] = bank

            w = layer_effects(pipe, csa, write)

            def read():
                with csa.read([box["bank"]], 1, halves=2):
                    unet_out(pipe, lp, tp, kp)

            r = layer_effects(pipe, csa, read)
            seen[step] = (all(w.values()), any(w.values()), all(r.values()), any(r.values()))
    assert seen[0] == seen[5] == seen[19] == (False, False, False, False)
    assert seen[20] == seen[22] == (True, True, True, True)


@torch.no_grad()
def test_the_read_obeys_each_layers_gate(tiny_sdxl):
    """With probability 0.5, the layers whose gate is off give plain attention, the others do not."""
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    lp, tp, kp = unet_inputs(pipe, 2, seed=9)
    config = ConsistencyConfig(schedule=((0, 0.5),))
    with ConsistentAttention(pipe.unet, config, seed=3) as csa:
        table = csa.gate_table(12)
        step = next(s for s in range(12) if 0 < table[s].sum() < len(csa.layers))  # some on, some off
        csa.start(12, "cpu")
        csa.begin_step(step)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as bank:
            unet_out(pipe, lat, text, kw)

        def read():
            with csa.read([bank], 1, halves=2):
                unet_out(pipe, lp, tp, kp)

        effects = layer_effects(pipe, csa, read)
        gates = {name: bool(table[step, info.index]) for name, info in csa.layers.items()}
    assert effects == gates


def test_gates_are_seeded_and_follow_the_probabilities(tiny_sdxl):
    with ConsistentAttention(tiny_sdxl.pipe.unet, seed=4) as csa:  # reference defaults: 0, then 0.7, 0.9 from 20
        assert csa.config.probability(0) == 0 and csa.config.probability(1) == 0.7
        assert csa.config.probability(19) == 0.7 and csa.config.probability(20) == 0.9
        a, b = csa.gate_table(400), csa.gate_table(400)
    with ConsistentAttention(tiny_sdxl.pipe.unet, seed=5) as csa:
        c = csa.gate_table(400)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a[0].sum() == 0
    assert 0.6 < a[1:20].float().mean() < 0.8 and 0.85 < a[20:].float().mean() < 0.95


@torch.no_grad()
def test_each_step_reads_the_bank_of_that_step(tiny_sdxl):
    """The panels at step s read exactly what the references deposited at step s, and the steps differ."""
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 8)
    lp, tp, kp = unet_inputs(pipe, 2, seed=9)
    read_banks, written = [], []
    original = ConsistentAttnProcessor._read

    def spy(self, *a):
        read_banks.append(self.slot.bank_k.clone())
        return original(self, *a)

    ConsistentAttnProcessor._read = spy
    try:
        with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
            csa.start(2, "cpu")
            first = csa.layers[next(iter(csa.layers))].index
            for step in range(2):
                csa.begin_step(step)
                with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as bank:
                    unet_out(pipe, lat + step, text, kw)
                written.append(bank.layer(first, 2)[0])
                with csa.read([csa.step_bank("A")], 1, halves=2):
                    unet_out(pipe, lp, tp, kp)
                assert list(csa.banks) == ["A"]  # only this step's bank is held
    finally:
        ConsistentAttnProcessor._read = original
    per_step = len(read_banks) // 2
    assert torch.equal(read_banks[0], written[0]) and torch.equal(read_banks[per_step], written[1])
    assert not torch.equal(written[0], written[1])


@torch.no_grad()
def test_every_image_has_its_own_token_sample(tiny_sdxl):
    pipe = tiny_sdxl.pipe
    lat, text, kw = unet_inputs(pipe, 6)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS), seed=4) as csa:
        csa.start(4, "cpu")
        draws = {}
        for step in (1, 2):
            csa.begin_step(step)
            spy = LayerSpy(pipe.unet, csa.layers)
            with csa.write("A", 3, sample_seed=7, latent_hw=hw(), device="cpu") as bank:
                samples = {n: csa.slots[i.index].samples.clone() for n, i in csa.layers.items()}
                unet_out(pipe, lat, text, kw)
            spy.remove()
            draws[step] = samples
            for name, info in csa.layers.items():
                idx = samples[name]
                tokens = level_tokens(info.scale, hw())
                assert idx.shape == (3, int(tokens * info.rate))
                assert all(len(set(row.tolist())) == idx.shape[1] for row in idx)  # no repeats within an image
                assert len({tuple(row.tolist()) for row in idx}) == 3  # every image its own sample
                keys = pipe.unet.get_submodule(name).to_k(spy.inputs[name]).view(2, 3, tokens, -1)
                for i in range(3):  # the bank holds image i's keys at image i's own indices
                    torch.testing.assert_close(bank.keys[info.index][:, i], keys[:, i, idx[i]])
        csa.begin_step(1)
        with csa.write("A", 3, sample_seed=7, latent_hw=hw(), device="cpu"):
            again = {n: csa.slots[i.index].samples.clone() for n, i in csa.layers.items()}
            unet_out(pipe, lat, text, kw)
        layers = dict(csa.layers)
    name = next(iter(draws[1]))
    assert torch.equal(draws[1][name], again[name])  # seeded by writer and step
    assert not torch.equal(draws[1][name], draws[2][name])  # drawn afresh at every step
    by_scale = {}
    for n, info in layers.items():  # all layers of one resolution share the step's draw
        by_scale.setdefault(info.scale, []).append(draws[1][n])
    assert all(all(torch.equal(d[0], other) for other in d) for d in by_scale.values())


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
    lp, tp, kp = unet_inputs(pipe, 2, seed=5)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        started(csa)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as w1:
            a = unet_out(pipe, lat, text, kw)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as w2:
            b = unet_out(pipe, lat2, text, kw)
        torch.testing.assert_close(a[:4], b[:4])
        assert (a[4:] - b[4:]).abs().max() > 1e-3
        # read: the bank's conditional half differs, the unconditional half must not move
        with csa.read([w1], 1, halves=2):
            r1 = unet_out(pipe, lp, tp, kp)
        with csa.read([w2], 1, halves=2):
            r2 = unet_out(pipe, lp, tp, kp)
    torch.testing.assert_close(r1[:1], r2[:1])
    assert (r1[1:] - r2[1:]).abs().max() > 1e-4


@torch.no_grad()
def test_each_image_borrows_only_from_the_others():
    """On one attention layer: image i attends its own tokens plus samples of images j != i, nothing else."""
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    unet = torch.nn.Module()
    unet.config = type("C", (), {"block_out_channels": (16, 16)})()
    state = ConsistentAttention.__new__(ConsistentAttention)
    ConsistentAttention.__init__(state, unet, ConsistencyConfig(schedule=ALWAYS))
    from storystudio.engine.attention.consistent import LayerSlot, Phase

    slot = LayerSlot(log_gate=torch.tensor(0.0))
    slot.samples = torch.stack([torch.arange(5) + i for i in range(3)])  # image i: tokens i..i+4
    slot.others = torch.tensor([[j for j in range(3) if j != i] for i in range(3)])
    state.phase, state.active, state.n_images, state.kernel = Phase.WRITE, True, 3, "cpu-flash"
    proc = ConsistentAttnProcessor(state, 0.5, slot)
    x = torch.randn(3, 10, 16)  # no CFG: one half of three images
    out = proc(attn, x)
    k, v = attn.to_k(x), attn.to_v(x)
    for i in range(3):
        others = [j for j in range(3) if j != i]
        ek = torch.cat([k[j, j : j + 5] for j in others])[None]
        ev = torch.cat([v[j, j : j + 5] for j in others])[None]
        torch.testing.assert_close(out[i : i + 1], reference_attention(attn, x[i : i + 1], ek, ev))
    assert slot.out_k.shape == (1, 3, 5, 16)
    torch.testing.assert_close(slot.out_k[0, 1], k[1, 1:6])


def pairwise(t: torch.Tensor) -> float:
    pairs = list(itertools.combinations(range(t.shape[0]), 2))
    return sum((t[i] - t[j]).pow(2).mean().item() for i, j in pairs) / len(pairs)


@torch.no_grad()
def test_write_makes_references_alike(tiny_model):
    """Same prompt: with consistent attention the references' attention outputs converge over the steps."""
    from storystudio.engine.attention.config import Phase
    from storystudio.engine.story.prompts import PromptEncoder
    from storystudio.engine.story.sampler import Group, StorySampler

    pipe = tiny_model.pipe
    prompt = PromptEncoder(pipe).encode("a girl", "")
    spread = {}
    for mode in ("plain", "write"):
        outputs = {}
        with ConsistentAttention(pipe.unet) as csa:
            hooks = [
                pipe.unet.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: outputs.__setitem__(n, o))
                for n in csa.layers
            ]
            phase = Phase.PLAIN if mode == "plain" else Phase.WRITE
            group = Group(phase, ["a", "b", "c", "d"], (64, 64), [0, 1, 2, 3], [prompt] * 4, character="A",
                          sample_seed=3)
            StorySampler(pipe, csa, torch.device("cpu"), tiny_model.arch).run([group], 6, 5.0)
            for h in hooks:
                h.remove()
        spread[mode] = sum(pairwise(o[4:]) for o in outputs.values()) / len(outputs)  # conditional half
        spread[mode + "_final"] = group.latents
    assert spread["write"] < 0.5 * spread["plain"]
    assert not torch.equal(spread["write_final"], spread["plain_final"])


@torch.no_grad()
def test_read_with_empty_bank_equals_plain(tiny_model):
    pipe = tiny_model.pipe
    lat8, text8, kw8 = unet_inputs(pipe, 8)
    lat, text, kw = unet_inputs(pipe, 2, seed=9)
    empty = ConsistencyConfig(rate_coarse=0.0, rate_fine=0.0, schedule=ALWAYS)
    with ConsistentAttention(pipe.unet, empty) as csa:
        started(csa)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as bank:
            unet_out(pipe, lat8, text8, kw8)
        with csa.plain(1):
            plain = unet_out(pipe, lat, text, kw)
        with csa.read([bank], 1, halves=2):
            read = unet_out(pipe, lat, text, kw)
    torch.testing.assert_close(read, plain, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_read_uses_the_bank_of_every_character(tiny_sdxl):
    pipe = tiny_sdxl.pipe
    lat8, text8, kw8 = unet_inputs(pipe, 8)
    lat, text, kw = unet_inputs(pipe, 2, seed=9)
    lengths = []
    original = ConsistentAttnProcessor._read

    def spy(self, attn, q, k, v):
        lengths.append(self.slot.bank_k.shape[1])
        return original(self, attn, q, k, v)

    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        started(csa)
        for name, seed in (("A", 1), ("B", 2)):
            with csa.write(name, 4, sample_seed=seed, latent_hw=hw(), device="cpu"):
                unet_out(pipe, lat8 + seed, text8, kw8)
        ConsistentAttnProcessor._read = spy
        try:
            results = {}
            for label, chosen in (("A", ["A"]), ("B", ["B"]), ("AB", ["A", "B"])):
                lengths.clear()
                with csa.read([csa.step_bank(c) for c in chosen], 1, halves=2):
                    results[label] = unet_out(pipe, lat, text, kw)
                results[label + "_lengths"] = list(lengths)
        finally:
            ConsistentAttnProcessor._read = original
    for kab, ka, kb in zip(results["AB_lengths"], results["A_lengths"], results["B_lengths"]):
        assert kab == ka + kb > 0  # both banks, each complete
    assert not torch.allclose(results["AB"], results["A"]) and not torch.allclose(results["AB"], results["B"])


@torch.no_grad()
def test_without_guidance(tiny_sd15):
    """guidance <= 1 means no CFG batch: one half; write and read still work."""
    pipe = tiny_sd15.pipe
    lat4, text4, kw4 = unet_inputs(pipe, 4)
    lat, text, kw = unet_inputs(pipe, 1, seed=3)
    with ConsistentAttention(pipe.unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        started(csa)
        with csa.write("A", 4, sample_seed=1, latent_hw=hw(), device="cpu") as bank:
            out = unet_out(pipe, lat4, text4, kw4)
        assert all(k.shape[0] == 1 for k in bank.keys)
        with csa.read([bank], 1, halves=1):
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
        started(csa)
        with csa.write("A", 2, sample_seed=1, latent_hw=(8, 8), device="cpu"):
            torch.testing.assert_close(run(), plain, rtol=1e-5, atol=1e-5)
    with ConsistentAttention(unet, ConsistencyConfig(schedule=ALWAYS)) as csa:
        started(csa)
        assert {n.split(".")[1] for n in csa.layers} == {"1", "2"}
        with csa.write("A", 2, sample_seed=1, latent_hw=(8, 8), device="cpu") as bank:
            written = run()
        with csa.read([bank], 2, halves=2):
            read = run()
    assert (written - plain).abs().max() > 1e-4 and (read - plain).abs().max() > 1e-4
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())


def test_a_unet_call_outside_a_started_step_is_refused(tiny_sd15):
    with ConsistentAttention(tiny_sd15.pipe.unet) as csa:
        with pytest.raises(RuntimeError, match="begin a step"):
            with csa.plain(1):
                pass
        csa.start(2, "cpu")
        with pytest.raises(RuntimeError, match="outside the run"):
            csa.begin_step(2)
