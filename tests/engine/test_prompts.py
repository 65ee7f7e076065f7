"""Prompt encoding: chunks for long prompts, the weighting syntax, exactness against diffusers for short prompts."""

from __future__ import annotations

import pytest
import torch

from storystudio.engine.models.random_weights import build_tiny_tokenizer
from storystudio.engine.story.prompts import (
    CHUNK_TOKENS,
    MAX_CHUNKS,
    PAREN_WEIGHT,
    PHRASE_LOOKBACK,
    Fragment,
    PromptEncoder,
    _split,
    parse_prompt,
)

SHORT = "a girl with red hair and a green coat reads a book, comic book style, bold ink lines"
NEGATIVE = "blurry, low quality, extra fingers"
# Long prompts are built from these words (all in the tiny tokenizer's vocabulary, one or a few tokens each).
PHRASES = ["a girl with red hair", "a green coat", "reads a book", "in the old lighthouse", "at night",
           "waves crash on the rocks", "the lamp turns slowly", "a tall man with a grey beard"]
N = CHUNK_TOKENS + 2


def token_count(pipe, text: str) -> int:
    return len(pipe.tokenizer(text, add_special_tokens=False).input_ids)


def long_prompt(pipe, tokens: int, last: str = "harbour") -> str:
    """A comma-separated prompt of about ``tokens`` tokens whose last word is ``last``."""
    words: list[str] = []
    i = 0
    while token_count(pipe, ", ".join(words + [last])) < tokens:
        words.append(PHRASES[i % len(PHRASES)])
        i += 1
    return ", ".join(words + [last])


def first_chunk_text(encoder: PromptEncoder, prompt: str) -> str:
    """The words of a long comma-separated prompt's first chunk (it ends after a comma), checked by their tokens."""
    chunk = encoder._plan(0, parse_prompt(prompt)).chunks[0]
    tokenizer = encoder.tokenizers[0]
    commas = tokenizer.convert_ids_to_tokens(chunk).count(",</w>")
    head = ", ".join(prompt.split(", ")[:commas]) + ","
    assert tokenizer(head, add_special_tokens=False).input_ids == chunk
    return head


def diffusers_embeds(model, prompt: str, negative: str | None):
    """diffusers' own encode_prompt, as its pipelines call it: (cond, uncond, pooled, negative pooled)."""
    pipe = model.pipe if hasattr(model, "pipe") else model
    guidance = negative is not None
    if hasattr(pipe, "text_encoder_2"):
        return pipe.encode_prompt(prompt, None, "cpu", 1, guidance, negative)
    cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, guidance, negative)
    return cond, uncond, None, None


def sdxl(model) -> bool:
    return model.arch == "sdxl"


# ---- exactness for short prompts ----------------------------------------------------------------------


@pytest.mark.parametrize("prompt, negative", [
    (SHORT, NEGATIVE),
    (SHORT, ""),  # the pipeline passes the negative as a string, also when empty
    ("", ""),
    ("a red cat [Ann] and [Bo] at the lighthouse", None),  # no guidance; square brackets are text
])
def test_short_prompts_match_diffusers_bit_for_bit(tiny_model, prompt, negative):
    encoder = PromptEncoder(tiny_model.pipe)
    out = encoder.encode(prompt, negative)
    cond, uncond, pooled, negative_pooled = diffusers_embeds(tiny_model, prompt, negative)
    assert out.chunks == 1 and out.notes == []
    assert out.cond.shape == (1, N, cond.shape[-1])
    assert torch.equal(out.cond, cond)
    if negative is None:
        assert out.uncond is None and out.negative_pooled is None
    else:
        assert torch.equal(out.uncond, uncond)
    if sdxl(tiny_model):
        assert torch.equal(out.pooled, pooled)
        if negative is not None:
            assert torch.equal(out.negative_pooled, negative_pooled)
    else:
        assert out.pooled is None and out.negative_pooled is None
    assert out.cond.dtype == tiny_model.pipe.unet.dtype


def test_a_prompt_of_exactly_one_full_chunk_matches_diffusers(tiny_model):
    pipe = tiny_model.pipe
    prompt = long_prompt(pipe, CHUNK_TOKENS)
    while token_count(pipe, prompt) > CHUNK_TOKENS:
        prompt = prompt.rsplit(" ", 1)[0]
    prompt += " a" * (CHUNK_TOKENS - token_count(pipe, prompt))
    assert token_count(pipe, prompt) == CHUNK_TOKENS
    out = PromptEncoder(pipe).encode(prompt, NEGATIVE)
    cond, uncond, pooled, _ = diffusers_embeds(tiny_model, prompt, NEGATIVE)
    assert out.chunks == 1
    assert torch.equal(out.cond, cond) and torch.equal(out.uncond, uncond)
    if pooled is not None:
        assert torch.equal(out.pooled, pooled)


def test_short_prompts_match_diffusers_with_padding_tokenizers(tiny_model):
    """SD2.x's tokenizer and SDXL's second tokenizer pad with "!", not with the end token."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    bang = build_tiny_tokenizer()
    bang.pad_token = "!"
    assert bang.pad_token_id != bang.eos_token_id
    parts = dict(tiny_model.pipe.components)
    if sdxl(tiny_model):
        parts["tokenizer_2"] = bang
        pipe = StableDiffusionXLPipeline(**parts)
    else:
        parts["tokenizer"] = bang
        pipe = StableDiffusionPipeline(**parts)
    out = PromptEncoder(pipe).encode(SHORT, "")
    cond, uncond, pooled, negative_pooled = diffusers_embeds(pipe, SHORT, "")
    assert torch.equal(out.cond, cond) and torch.equal(out.uncond, uncond)
    if pooled is not None:
        assert torch.equal(out.pooled, pooled) and torch.equal(out.negative_pooled, negative_pooled)
    # the padding chunk of a longer picture is the empty prompt as this tokenizer pads it
    longer = PromptEncoder(pipe).encode(long_prompt(pipe, 100), "")
    assert longer.chunks == 2
    assert torch.equal(longer.uncond[:, :N], uncond) and torch.equal(longer.uncond[:, N:], uncond)


# ---- long prompts -----------------------------------------------------------------------------------


def test_a_200_token_prompt_is_read_in_three_chunks_to_its_last_word(tiny_model):
    pipe = tiny_model.pipe
    encoder = PromptEncoder(pipe)
    prompt = long_prompt(pipe, 200, last="harbour")
    assert 190 <= token_count(pipe, prompt) <= 215
    other = prompt.rsplit(" ", 1)[0] + " garden"
    assert encoder.chunks(prompt) == 3
    a, b = encoder.encode(prompt, ""), encoder.encode(other, "")
    assert a.chunks == 3 and a.cond.shape[1] == 3 * N and a.notes == []
    assert torch.equal(a.cond[:, : 2 * N], b.cond[:, : 2 * N])  # the first two chunks never see the last word
    assert not torch.equal(a.cond[:, 2 * N :], b.cond[:, 2 * N :])  # the third chunk's words reach the UNet
    if sdxl(tiny_model):
        assert torch.equal(a.pooled, b.pooled)
    # the first chunk is diffusers' own encoding of the first chunk's words
    cond, _, pooled, _ = diffusers_embeds(tiny_model, first_chunk_text(encoder, prompt), "")
    assert torch.equal(a.cond[:, :N], cond)
    if pooled is not None:
        assert torch.equal(a.pooled, pooled)


def test_pooled_comes_from_the_first_chunk_only(tiny_sdxl):
    pipe = tiny_sdxl.pipe
    encoder = PromptEncoder(pipe)
    prompt = long_prompt(pipe, 200)
    head = first_chunk_text(encoder, prompt)
    tail = prompt[len(head) :]
    assert "night" in tail
    changed_later = head + tail.replace("night", "noon")  # words of the second and third chunks
    changed_first = prompt.replace("a girl", "a boy", 1)
    base = encoder.encode(prompt, NEGATIVE)
    later = encoder.encode(changed_later, NEGATIVE)
    first = encoder.encode(changed_first, NEGATIVE)
    assert torch.equal(base.cond[:, :N], later.cond[:, :N]) and not torch.equal(base.cond[:, N:], later.cond[:, N:])
    assert torch.equal(base.pooled, later.pooled)
    assert not torch.equal(base.pooled, first.pooled)
    assert base.pooled.shape == (1, pipe.text_encoder_2.config.projection_dim)
    # it is text_encoder_2's projection of the first chunk's tokens, i.e. diffusers' pooled embedding of those words
    _, _, pooled, _ = diffusers_embeds(pipe, head, NEGATIVE)
    assert torch.equal(base.pooled, pooled)


def test_chunks_end_after_a_phrase_mark_else_after_a_whole_word():
    # 80 tokens: words of two tokens ("ab" + "c</w>"), a comma at position 60
    pieces = []
    while len(pieces) < 80:
        pieces += ["ab", "c</w>"]
    pieces[60] = ",</w>"
    ids = list(range(len(pieces)))
    assert _split(ids, pieces) == [61, 80]  # after the comma: it is within the last PHRASE_LOOKBACK tokens
    pieces[60] = "c</w>"
    pieces[40] = ",</w>"
    assert CHUNK_TOKENS - 41 > PHRASE_LOOKBACK
    assert _split(ids, pieces) == [74, 80]  # too far back: after the last whole word (token 73), not inside one
    assert _split(ids[:75], pieces[:75]) == [75]  # fits: one chunk
    assert _split(list(range(160)), ["x"] * 160) == [75, 150, 160]  # no word ends at all: hard cuts
    assert _split([], []) == [0]


def test_a_long_chunked_prompt_cuts_no_word(tiny_model):
    pipe = tiny_model.pipe
    encoder = PromptEncoder(pipe)
    prompt = long_prompt(pipe, 200)
    plan = encoder._plan(0, parse_prompt(prompt))
    for chunk in plan.chunks[:-1]:
        assert len(chunk) <= CHUNK_TOKENS
        assert pipe.tokenizer.convert_ids_to_tokens(chunk[-1]) == ",</w>"  # phrases stay whole
    assert [t for c in plan.chunks for t in c] == pipe.tokenizer(prompt, add_special_tokens=False).input_ids


def test_negative_and_prompt_are_padded_to_the_same_length(tiny_model):
    pipe = tiny_model.pipe
    encoder = PromptEncoder(pipe)
    long = long_prompt(pipe, 160)
    empty = encoder.encode("", "").cond  # one chunk of the empty prompt: what padding adds
    short_alone = encoder.encode(SHORT, NEGATIVE)

    out = encoder.encode(long, NEGATIVE)  # negative shorter than the prompt
    assert out.chunks == 3 and out.uncond.shape == out.cond.shape == (1, 3 * N, empty.shape[-1])
    assert torch.equal(out.uncond[:, :N], short_alone.uncond)
    assert torch.equal(out.uncond[:, N : 2 * N], empty) and torch.equal(out.uncond[:, 2 * N :], empty)

    out = encoder.encode(SHORT, long)  # negative longer than the prompt
    assert out.chunks == 3 and out.cond.shape == out.uncond.shape
    assert torch.equal(out.cond[:, :N], short_alone.cond)
    assert torch.equal(out.cond[:, N:], torch.cat([empty, empty], dim=1))
    if sdxl(tiny_model):
        assert torch.equal(out.pooled, short_alone.pooled)

    assert encoder.encode(long, None).cond.shape[1] == 3 * N  # without guidance: the prompt's own length
    assert encoder.encode(SHORT, None).uncond is None


def test_one_pictures_conditioning_depends_only_on_its_own_prompts(tiny_model):
    pipe = tiny_model.pipe
    encoder = PromptEncoder(pipe)
    before = encoder.encode(SHORT, NEGATIVE)
    encoder.encode(long_prompt(pipe, 300), "(ugly:1.4), " + long_prompt(pipe, 120))
    encoder.encode("(red:0.3) cat", "")
    after = encoder.encode(SHORT, NEGATIVE)
    fresh = PromptEncoder(pipe).encode(SHORT, NEGATIVE)
    for out in (after, fresh):
        assert out.chunks == before.chunks == 1
        assert torch.equal(out.cond, before.cond) and torch.equal(out.uncond, before.uncond)
        if sdxl(tiny_model):
            assert torch.equal(out.pooled, before.pooled) and torch.equal(out.negative_pooled, before.negative_pooled)


# ---- the limit ------------------------------------------------------------------------------------------


def test_past_the_limit_the_rest_is_ignored_with_a_note(tiny_model):
    pipe = tiny_model.pipe
    assert MAX_CHUNKS == 6 and PromptEncoder(pipe).max_chunks == MAX_CHUNKS
    limited = PromptEncoder(pipe, max_chunks=2)
    prompt = long_prompt(pipe, 200, last="harbour")
    assert limited.chunks(prompt) == 2
    out = limited.encode(prompt, NEGATIVE)
    full = PromptEncoder(pipe).encode(prompt, NEGATIVE)
    assert out.chunks == 2 and out.cond.shape[1] == 2 * N == out.uncond.shape[1]
    assert torch.equal(out.cond, full.cond[:, : 2 * N])
    assert len(out.notes) == 1 and full.notes == []
    note = out.notes[0]
    assert "prompt is longer than the model reads" in note and "it reads 150" in note
    excerpt = note.split('from "', 1)[1].split('" on', 1)[0]
    assert 10 <= len(excerpt) <= 60 and excerpt.endswith("…")
    head = first_chunk_text(limited, prompt)
    assert excerpt[:-1] in prompt[len(head) :] and "harbour" not in head
    assert limited.check(prompt, NEGATIVE) == out.notes
    # the negative prompt gets its own note, and the picture's length stays at the limit
    out = limited.encode(SHORT, prompt)
    assert out.chunks == 2 and [n.split(" is longer")[0] for n in out.notes] == ["The negative prompt"]


def test_chunks_needs_only_the_tokenizer(tiny_model, monkeypatch):
    pipe = tiny_model.pipe
    encoder = PromptEncoder(pipe)
    prompt = long_prompt(pipe, 200)
    expected = encoder.encode(prompt, None).chunks

    def refuse(*args, **kwargs):
        raise AssertionError("chunks() ran a text encoder")

    for name in ("text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            monkeypatch.setattr(getattr(pipe, name), "forward", refuse)
    assert encoder.chunks(prompt) == expected == 3
    assert encoder.chunks("") == encoder.chunks(SHORT) == 1
    assert encoder.check(prompt, "(bad") != []


# ---- the weighting syntax ---------------------------------------------------------------------------------


def test_parse_prompt_reads_weights_nesting_and_escapes():
    assert parse_prompt(SHORT).fragments == (Fragment(SHORT, 1.0),)
    assert parse_prompt("a (red:1.2) cat").fragments == (Fragment("a ", 1.0), Fragment("red", 1.2), Fragment(" cat", 1.0))
    assert parse_prompt("(red)").fragments == (Fragment("red", PAREN_WEIGHT),)
    nested = parse_prompt("((red:1.5) hair:2) x").fragments
    assert [f.text for f in nested] == ["red", " hair", " x"]
    assert nested[0].weight == pytest.approx(3.0) and nested[1].weight == 2 and nested[2].weight == 1
    assert parse_prompt("((red))").fragments == (Fragment("red", PAREN_WEIGHT * PAREN_WEIGHT),)
    assert parse_prompt(r"a \(red\) [Ann] \\ cat").fragments == (Fragment(r"a (red) [Ann] \ cat", 1.0),)
    assert parse_prompt("(several words: 0.8 )").fragments == (Fragment("several words", 0.8),)
    assert parse_prompt("(12:30 sharp:1.3)").fragments == (Fragment("12:30 sharp", 1.3),)  # the last colon counts
    assert parse_prompt("[Ann] and [Bo]").fragments == (Fragment("[Ann] and [Bo]", 1.0),)
    assert parse_prompt("(a:0)").fragments == (Fragment("a", 0.0),)
    assert parse_prompt("").fragments == (Fragment("", 1.0),)


MALFORMED = [
    ("(red hair", "never closed"),
    ("red) hair", 'a ")" has no "("'),
    ("(red:abc) hair", '"abc" is not a number'),
    ("(red:nan) hair", '"nan" is not a number'),
    ("(red:1e999) hair", "not a finite number"),
    ("(red:5) hair", "outside 0 to 3"),
    ("(red:-0.5) hair", "outside 0 to 3"),
    ("((((((((((((red)))))))))))) hair", "nested brackets multiply"),
    ("(note: she is tall)", "is not a number"),
]


@pytest.mark.parametrize("text, words", MALFORMED)
def test_malformed_syntax_is_read_as_the_literal_text(text, words):
    parsed = parse_prompt(text)
    assert words in parsed.problem
    assert parsed.fragments == (Fragment(text, 1.0),)


@pytest.mark.parametrize("text, words", [MALFORMED[0], MALFORMED[2], MALFORMED[5]])
def test_malformed_syntax_encodes_as_typed_with_a_note(tiny_model, text, words):
    out = PromptEncoder(tiny_model.pipe).encode(text, text)
    assert len(out.notes) == 2 and all(words in n and "used as typed" in n for n in out.notes)
    assert out.notes[0].startswith("The weighting in the prompt") and "negative prompt" in out.notes[1]
    cond, uncond, pooled, _ = diffusers_embeds(tiny_model, text, text)
    assert torch.equal(out.cond, cond) and torch.equal(out.uncond, uncond)  # the literal text, unweighted
    if pooled is not None:
        assert torch.equal(out.pooled, pooled)
    escaped = parse_prompt(r"\(red" + text)  # escapes still become brackets when the rest is malformed
    assert escaped.problem and escaped.fragments[0].text == "(red" + text


def test_escaped_brackets_are_literal_text(tiny_model):
    encoder = PromptEncoder(tiny_model.pipe)
    out = encoder.encode(r"a girl \(eight years old\) with red hair", "")
    literal, _, _, _ = diffusers_embeds(tiny_model, "a girl (eight years old) with red hair", "")
    assert torch.equal(out.cond, literal) and out.notes == []
    weighted = encoder.encode("a girl (eight years old) with red hair", "")
    assert not torch.equal(weighted.cond, literal)


@pytest.mark.parametrize("syntax, weight", [("(red:1.5)", 1.5), ("(red)", PAREN_WEIGHT), ("((red:1.5))", 1.65),
                                            ("(red:0.5)", 0.5), ("(red:0)", 0.0)])
def test_weights_scale_the_weighted_tokens_from_the_empty_prompt(tiny_model, syntax, weight):
    """z[i] = e[i] + w (z[i] - e[i]) at the weighted tokens' positions; every other position is unchanged."""
    pipe = tiny_model.pipe
    encoder = PromptEncoder(pipe)
    plain = encoder.encode("a girl with red hair, a green coat", NEGATIVE)
    out = encoder.encode(f"a girl with {syntax} hair, a green coat", NEGATIVE)
    empty = encoder.encode("", None).cond
    before = len(pipe.tokenizer("a girl with", add_special_tokens=False).input_ids)
    red = len(pipe.tokenizer("red", add_special_tokens=False).input_ids)
    at = slice(1 + before, 1 + before + red)  # after the start token
    others = torch.ones(N, dtype=torch.bool)
    others[at] = False
    assert torch.equal(out.cond[:, others], plain.cond[:, others])
    expected = empty[:, at] + weight * (plain.cond[:, at] - empty[:, at])
    torch.testing.assert_close(out.cond[:, at], expected, rtol=0, atol=1e-6)
    assert not torch.equal(out.cond[:, at], plain.cond[:, at])
    assert torch.equal(out.uncond, plain.uncond)
    if sdxl(tiny_model):
        assert torch.equal(out.pooled, plain.pooled)  # the pooled embedding is not weighted


def test_weights_apply_in_later_chunks_too(tiny_model):
    pipe = tiny_model.pipe
    encoder = PromptEncoder(pipe)
    prompt = long_prompt(pipe, 160, last="harbour")
    out = encoder.encode(prompt.replace("harbour", "(harbour:1.4)"), "")
    plain = encoder.encode(prompt, "")
    assert out.chunks == plain.chunks == 3
    assert torch.equal(out.cond[:, : 2 * N], plain.cond[:, : 2 * N])
    assert not torch.equal(out.cond[:, 2 * N :], plain.cond[:, 2 * N :])
