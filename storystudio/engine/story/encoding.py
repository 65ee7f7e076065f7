"""Interim text conditioning through diffusers' own ``encode_prompt`` (one 77-token chunk).

Stands in for ``prompts.PromptEncoder`` (long prompts in chunks, weights)
with the same interface until that module lands; then this file goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EncodedPrompt:
    cond: torch.Tensor
    uncond: torch.Tensor | None
    pooled: torch.Tensor | None
    negative_pooled: torch.Tensor | None
    chunks: int = 1
    notes: list[str] = field(default_factory=list)


class PromptEncoder:
    def __init__(self, pipe: Any):
        self.pipe = pipe

    def chunks(self, text: str) -> int:
        return 1

    @torch.no_grad()
    def encode(self, prompt: str, negative: str | None) -> EncodedPrompt:
        guided = negative is not None
        device = self.pipe._execution_device
        if hasattr(self.pipe, "text_encoder_2"):
            c, u, p, np_ = self.pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1,
                                                   do_classifier_free_guidance=guided, negative_prompt=negative)
            return EncodedPrompt(c, u if guided else None, p, np_ if guided else None)
        c, u = self.pipe.encode_prompt(prompt, device, 1, guided, negative_prompt=negative)
        return EncodedPrompt(c, u if guided else None, None, None)
