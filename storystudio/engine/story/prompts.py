"""One picture's text conditioning: long prompts in chunks, and the weighting syntax users type.

CLIP text encoders read 77 tokens. A prompt longer than that is split into
chunks of at most 75 tokens; each chunk gets its own start and end token, is
padded to 77 and goes through the text encoder on its own, and the chunks'
hidden states are concatenated along the sequence (the convention of A1111,
ComfyUI and InvokeAI). The UNet's cross-attention reads any sequence length.

- Chunk boundaries: a chunk that would overflow ends after the last phrase
  mark (``,`` ``;`` ``.`` ``!`` ``?`` ``:``) among its last
  :data:`PHRASE_LOOKBACK` tokens; without one, after the last whole word; a
  single word longer than a chunk is cut. At most ``max_chunks`` chunks
  (:data:`MAX_CHUNKS`) are read; the rest is dropped with a note.
- Weighting syntax: ``(words:1.2)`` weighs the words by 1.2, ``(words)`` by
  :data:`PAREN_WEIGHT`, nested groups multiply, ``\\(`` and ``\\)`` are
  literal brackets (``\\\\`` a literal backslash). Square brackets are text
  (StoryStudio's ``[Name]`` tags are expanded before this). Malformed syntax
  (an unclosed or unopened bracket, a weight that is not a number, not finite,
  or outside 0..:data:`MAX_WEIGHT`) gives a note and the prompt is read as
  typed, without weights.
- Weight rule (ComfyUI's default, and compel's for weights above 1): at each
  weighted token position ``i`` of a chunk, ``z[i] = e[i] + w * (z[i] - e[i])``
  where ``e`` is the encoding of the empty prompt at the same position. Other
  positions are untouched, so a prompt without syntax is exactly unweighted.
- SDXL: both encoders' penultimate hidden states, concatenated on the channel
  axis as diffusers does; the pooled embedding is ``text_encoder_2``'s
  projection of the first chunk alone.

Encoding one chunk and applying the weights is compel's
``EmbeddingsProvider.build_weighted_embedding_tensor`` (its public API, with
the hidden-state choice per model family and its empty-prompt encoding);
parsing, chunking, the limit, the pooled embedding and the padding of the
negative prompt are here (``docs/ENGINE.md`` says why).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ModelError

# How many 75-token chunks are read at most (6 = 450 tokens); the rest of a prompt is dropped with a note.
MAX_CHUNKS = 6
# Tokens of text in one chunk: CLIP reads 77, of which the start and the end token take two.
CHUNK_TOKENS = 75
_WIDTH = CHUNK_TOKENS + 2
# A chunk that would overflow ends after a phrase mark found among its last this many tokens (A1111's rule).
PHRASE_LOOKBACK = 20
# The weight of "(words)" without a number, per pair of brackets.
PAREN_WEIGHT = 1.1
# Weights (also products of nested groups) outside 0..MAX_WEIGHT are refused as malformed.
MAX_WEIGHT = 3.0

_PHRASE_MARKS = frozenset(",;.!?:")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_ESCAPE = re.compile(r"\\([()\\])")
_EXCERPT_CHARS = 60


# ---- the weighting syntax -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fragment:
    """A piece of the prompt's text and the weight of its tokens."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class ParsedPrompt:
    fragments: tuple[Fragment, ...]
    problem: str | None = None  # why the weighting could not be read (then the text is one literal fragment)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 30 else text[:29] + "…"


def _weight_number(tail: str, group: str) -> tuple[float | None, str | None]:
    raw = tail.strip()
    if not _NUMBER.fullmatch(raw):
        return None, f'in "({_short(group)})" the weight "{_short(raw)}" is not a number'
    value = float(raw)
    if not math.isfinite(value):
        return None, f'in "({_short(group)})" the weight "{_short(raw)}" is not a finite number'
    if not 0.0 <= value <= MAX_WEIGHT:
        return None, f'in "({_short(group)})" the weight {raw} is outside 0 to {MAX_WEIGHT:g}'
    return value, None


def parse_prompt(text: str) -> ParsedPrompt:
    """The prompt's fragments with their weights; a literal reading and the problem when the syntax is malformed."""
    pieces: list[list[Any]] = []  # [text, weight] in order
    opened: list[tuple[int, int]] = []  # per open group: (index of its first piece, position of its "(")
    buf: list[str] = []
    problem = None

    def flush() -> None:
        if buf:
            pieces.append(["".join(buf), 1.0])
            buf.clear()

    i, n = 0, len(text)
    while i < n and problem is None:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "()\\":
            buf.append(text[i + 1])
            i += 2
            continue
        if c == "(":
            flush()
            opened.append((len(pieces), i))
        elif c == ")":
            if not opened:
                problem = 'a ")" has no "(" before it'
                break
            start, at = opened.pop()
            weight = PAREN_WEIGHT
            tail = "".join(buf)  # the group's own text after its last inner group: where ":weight" sits
            if ":" in tail:
                head, _, number = tail.rpartition(":")
                weight, problem = _weight_number(number, text[at + 1 : i])
                buf[:] = list(head)
            flush()
            if problem is None:
                for piece in pieces[start:]:
                    piece[1] *= weight
        else:
            buf.append(c)
        i += 1
    if problem is None and opened:
        problem = f'the "(" before "{_short(text[opened[-1][1] + 1 :])}" is never closed'
    flush()
    if problem is None:
        for piece_text, weight in pieces:
            if weight > MAX_WEIGHT + 1e-9 and piece_text.strip():
                problem = (f'"{_short(piece_text)}" would get the weight {weight:.3g} (nested brackets multiply), '
                           f"more than {MAX_WEIGHT:g}")
                break
    if problem is not None:
        return ParsedPrompt((Fragment(_ESCAPE.sub(r"\1", text)),), problem)
    merged: list[Fragment] = []  # neighbours of equal weight are tokenized together, as one text
    for piece_text, weight in pieces:
        if merged and merged[-1].weight == weight:
            merged[-1] = Fragment(merged[-1].text + piece_text, weight)
        else:
            merged.append(Fragment(piece_text, weight))
    return ParsedPrompt(tuple(merged) or (Fragment(""),))


# ---- tokens and chunks -------------------------------------------------------------------------------


@dataclass
class _Plan:
    """One text's tokens for one tokenizer, split into chunks (content only, no start/end/padding)."""

    chunks: list[list[int]]
    weights: list[list[float]]
    dropped: list[int] = field(default_factory=list)  # tokens past the limit


def _split(ids: list[int], pieces: list[str]) -> list[int]:
    """End positions of the chunks: after a phrase mark among the last PHRASE_LOOKBACK tokens, else after the
    last whole word, else at CHUNK_TOKENS."""
    ends, start, n = [], 0, len(ids)
    while n - start > CHUNK_TOKENS:
        end = start + CHUNK_TOKENS
        cut = next((j + 1 for j in range(end - 1, max(start, end - PHRASE_LOOKBACK) - 1, -1)
                    if pieces[j].endswith("</w>") and pieces[j][:-4] and set(pieces[j][:-4]) <= _PHRASE_MARKS), None)
        if cut is None:
            cut = next((j + 1 for j in range(end - 1, start - 1, -1) if pieces[j].endswith("</w>")), end)
        ends.append(cut)
        start = cut
    ends.append(n)
    return ends


def _decoded(tokenizer: Any, ids: list[int]) -> str:
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return re.sub(r"\s+([,.;:!?)])", r"\1", " ".join(text.split()))


@dataclass
class EncodedPrompt:
    """One picture's text conditioning, on the text encoders' device, in the UNet's dtype."""

    cond: torch.Tensor  # (1, L, C), L = 77 * chunks
    uncond: torch.Tensor | None  # (1, L, C) for the negative prompt; None without guidance
    pooled: torch.Tensor | None  # SDXL: (1, P) text_encoder_2's projection of the prompt's first chunk
    negative_pooled: torch.Tensor | None  # SDXL: the same for the negative prompt
    chunks: int  # L // 77
    notes: list[str]  # plain-words notes for the user (where the model cannot read everything)


class PromptEncoder:
    """Encodes a picture's prompt and negative prompt for a loaded StableDiffusion(XL)Pipeline.

    Create it once the pipeline is on its device; it caches the empty prompt's encoding.
    """

    def __init__(self, pipe: Any, max_chunks: int = MAX_CHUNKS):
        from compel.embeddings_provider import EmbeddingsProvider, ReturnedEmbeddingsType

        if max_chunks < 1:
            raise ValueError("max_chunks must be at least 1")
        self.pipe = pipe
        self.max_chunks = int(max_chunks)
        self.sdxl = hasattr(pipe, "text_encoder_2")
        self.device = pipe._execution_device
        self.dtype = pipe.unet.dtype
        if self.sdxl:
            pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
            kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED  # as diffusers' SDXL pipeline
        else:
            pairs = [(pipe.tokenizer, pipe.text_encoder)]
            kind = ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED  # as diffusers' SD1.x/2.x pipeline
        pairs = [(t, e) for t, e in pairs if t is not None and e is not None]
        self.tokenizers = [t for t, _ in pairs]
        self._providers = [
            EmbeddingsProvider(tokenizer, encoder, truncate=False, returned_embeddings_type=kind, device=self.device)
            for tokenizer, encoder in pairs
        ]
        for tokenizer in self.tokenizers:
            if tokenizer.model_max_length != _WIDTH:
                raise ModelError(f"This model's text encoder reads {tokenizer.model_max_length} tokens at a time; "
                                 f"StoryStudio encodes prompts for CLIP text encoders, which read {_WIDTH}.")

    # ---- planning (tokenizer only) ------------------------------------------------------------------
    def _plan(self, index: int, parsed: ParsedPrompt) -> _Plan:
        tokenizer = self.tokenizers[index]
        fragments = [f for f in parsed.fragments if f.text] or [Fragment("")]
        per_fragment = self._providers[index].get_token_ids([f.text for f in fragments],
                                                            include_start_and_end_markers=False)
        ids = [t for tokens in per_fragment for t in tokens]
        weights = [f.weight for f, tokens in zip(fragments, per_fragment) for _ in tokens]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        chunks, chunk_weights, start = [], [], 0
        for end in _split(ids, pieces):
            chunks.append(ids[start:end])
            chunk_weights.append(weights[start:end])
            start = end
        dropped = [t for c in chunks[self.max_chunks :] for t in c]
        return _Plan(chunks[: self.max_chunks], chunk_weights[: self.max_chunks], dropped)

    def _notes(self, what: str, parsed: ParsedPrompt, plan: _Plan) -> list[str]:
        notes = []
        if parsed.problem:
            notes.append(f"The weighting in the {what} cannot be read ({parsed.problem}), so the {what} is used "
                         "as typed, without weights. Write \\( and \\) for brackets that belong to the words.")
        if plan.dropped:
            read = sum(len(c) for c in plan.chunks)
            ignored = _decoded(self.tokenizers[0], plan.dropped)
            excerpt = ignored if len(ignored) <= _EXCERPT_CHARS else ignored[: _EXCERPT_CHARS - 1].rstrip() + "…"
            notes.append(f"The {what} is longer than the model reads ({read + len(plan.dropped)} tokens; it reads "
                         f"{self.max_chunks * CHUNK_TOKENS}), so its last {len(ignored.split())} words are ignored, "
                         f'from "{excerpt}" on. Shorten it to keep every word.')
        return notes

    def chunks(self, text: str) -> int:
        """The number of 77-token chunks ``encode`` uses for this text (at most ``max_chunks``); tokenizer only.

        A picture's sequence length is 77 times the larger of its prompt's and its negative prompt's count.
        """
        parsed = parse_prompt(text)
        return max(len(self._plan(i, parsed).chunks) for i in range(len(self.tokenizers)))

    def check(self, prompt: str, negative: str | None = None) -> list[str]:
        """The notes ``encode`` would give, without encoding (tokenizer only)."""
        notes = []
        for what, text in (("prompt", prompt), ("negative prompt", negative)):
            if text is not None:
                parsed = parse_prompt(text)
                notes += self._notes(what, parsed, self._plan(0, parsed))
        return notes

    # ---- encoding -------------------------------------------------------------------------------------
    def _encode_text(self, parsed: ParsedPrompt) -> tuple[list[torch.Tensor], torch.Tensor | None, _Plan]:
        """Per encoder (1, 77 * chunks, C_k), the pooled embedding of the first chunk (SDXL), the first plan."""
        hidden, pooled, first = [], None, None
        for index, (tokenizer, provider) in enumerate(zip(self.tokenizers, self._providers)):
            plan = self._plan(index, parsed)
            if first is None:
                first = plan
            bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
            ids, weights, mask = [], [], []
            for chunk, chunk_weights in zip(plan.chunks, plan.weights):
                padding = CHUNK_TOKENS - len(chunk)
                ids += [bos, *chunk, eos] + [pad] * padding
                weights += [1.0, *chunk_weights, 1.0] + [1.0] * padding
                mask += [1] * (len(chunk) + 2) + [0] * padding
            ids_t = torch.tensor(ids, dtype=torch.long, device=self.device)
            weights_t = torch.tensor(weights, dtype=torch.float32, device=self.device)
            # diffusers passes no attention mask unless the encoder's config asks for one; neither do we
            masked = getattr(provider.text_encoder.config, "use_attention_mask", False)
            mask_t = torch.tensor(mask, dtype=torch.long, device=self.device) if masked else None
            hidden.append(provider.build_weighted_embedding_tensor(ids_t, weights_t, mask_t, device=self.device))
            if self.sdxl and index == len(self._providers) - 1:
                pooled = provider.text_encoder(ids_t[None, :_WIDTH], output_hidden_states=True)[0]
        return hidden, pooled, first

    def _assemble(self, hidden: list[torch.Tensor], chunks: int) -> torch.Tensor:
        """Each encoder's states padded to ``chunks`` with the empty prompt's chunk, concatenated on the channels
        (SDXL's two tokenizers split a text alike; should they not, the shorter side is padded the same way)."""
        parts = []
        for states, provider in zip(hidden, self._providers):
            empty = provider.empty_z.to(self.device, states.dtype)
            parts.append(torch.cat([states.to(self.device)] + [empty] * (chunks - states.shape[1] // _WIDTH), dim=1))
        return torch.cat(parts, dim=-1).to(self.dtype)

    @torch.no_grad()
    def encode(self, prompt: str, negative: str | None) -> EncodedPrompt:
        """The conditioning of one picture. ``negative`` None: no classifier-free guidance (no uncond);
        a string (also "") is encoded as text, exactly as diffusers' ``encode_prompt`` does for a string."""
        parsed = parse_prompt(prompt)
        hidden, pooled, plan = self._encode_text(parsed)
        notes = self._notes("prompt", parsed, plan)
        lengths = [h.shape[1] // _WIDTH for h in hidden]
        neg_hidden, neg_pooled = None, None
        if negative is not None:
            neg_parsed = parse_prompt(negative)
            neg_hidden, neg_pooled, neg_plan = self._encode_text(neg_parsed)
            notes += self._notes("negative prompt", neg_parsed, neg_plan)
            lengths += [h.shape[1] // _WIDTH for h in neg_hidden]
        chunks = max(lengths)
        cond = self._assemble(hidden, chunks)
        uncond = self._assemble(neg_hidden, chunks) if neg_hidden is not None else None

        def place(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(self.device, self.dtype)

        return EncodedPrompt(cond, uncond, place(pooled), place(neg_pooled), chunks, notes)


def warm_up() -> None:
    """Import what encoding needs (compel, pyparsing) ahead of the first prompt: imports hold Python's lock."""
    import compel.embeddings_provider  # noqa: F401
