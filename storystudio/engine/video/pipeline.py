"""diffusers pieces of the video stage: per-frame IP-Adapter tokens, and the transition pipeline.

diffusers' ``UNetMotionModel`` projects the IP-Adapter image embeddings it is
given (``encoder_hid_proj``) and then repeats the result over all frames, so
every frame of a clip attends to the same image tokens. A transition wants
frame f to see the keyframes' embedding interpolated for f. Here:

- the caller passes the N per-frame embeddings as N "images" of one
  IP-Adapter: ``ip_adapter_image_embeds=[(halves, N, D)]``;
- the UNet projects them to (halves, N, tokens, C) and repeats that over the
  frames: row ``b`` of the flattened (halves x frames) batch holds all N
  token sets;
- :class:`PerFrameIPAdapterAttnProcessor` keeps token set ``b % N`` for row
  ``b`` (frame ``b % N`` of the unconditional half, then of the conditional
  half), and hands the rest of the work to diffusers' own IP-Adapter
  processor unchanged.

State lives on one :class:`PerFrameIPAdapter` object per UNet (installed and
uninstalled explicitly, like ``consistent_attention``); nothing is global.
This module imports diffusers when it is imported: ``video_diffusion``
imports it only when a clip is made.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AnimateDiffSparseControlNetPipeline
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

from ..attention.swap import ProcessorSwap


class PerFrameIPAdapter(ProcessorSwap):
    """Per-frame IP-Adapter tokens on a motion UNet: installs the processors and holds their state.

    ``frames`` is the clip's frame count while a clip is made, ``None`` otherwise
    (then the processors behave exactly like diffusers' IP-Adapter processor).
    """

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet
        self.frames: int | None = None
        self.layers: list[str] = []  # processor names that were replaced

    def install(self) -> PerFrameIPAdapter:
        if self.installed:
            return self

        def ours(module_name: str, proc: Any) -> PerFrameIPAdapterAttnProcessor | None:
            if isinstance(proc, IPAdapterAttnProcessor2_0) and not isinstance(proc, PerFrameIPAdapterAttnProcessor):
                return PerFrameIPAdapterAttnProcessor.sharing(proc, self)
            return None

        self.layers = self._swap(ours)
        if not self.layers:
            raise ValueError("this UNet has no IP-Adapter layers; load an IP-Adapter first")
        return self

    def uninstall(self) -> None:
        if self._restore():
            self.layers = []
            self.frames = None

    def select(self, tokens: torch.Tensor) -> torch.Tensor:
        """(rows, N, T, C) -> (rows, T, C): row b keeps token set b % N.

        ``UNetMotionModel`` flattens (halves, frames) into rows with the frame
        index running fastest, so b % N is the frame of row b in either half.
        """
        n = self.frames
        if tokens.ndim != 4 or tokens.shape[1] != n or tokens.shape[0] % n:
            raise ValueError(
                f"per-frame IP-Adapter tokens must be one image embedding per frame ({n}); "
                f"got tokens of shape {tuple(tokens.shape)}"
            )
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        return tokens[rows, rows % n]


class PerFrameIPAdapterAttnProcessor(IPAdapterAttnProcessor2_0):
    """diffusers' IP-Adapter processor, given token set f for frame f instead of all of them.

    It shares the key and value projections of the processor it replaces (no
    copy of the weights), so ``set_ip_adapter_scale`` and the loaded weights
    act on it as on the original.
    """

    def __init__(self, state: PerFrameIPAdapter, hidden_size, cross_attention_dim=None, num_tokens=(4,), scale=1.0):
        super().__init__(hidden_size, cross_attention_dim, num_tokens, scale)
        self.state = state

    @classmethod
    def sharing(cls, proc: IPAdapterAttnProcessor2_0, state: PerFrameIPAdapter) -> PerFrameIPAdapterAttnProcessor:
        with torch.device("meta"):  # the projections are replaced by the original's right away
            new = cls(state, proc.hidden_size, proc.cross_attention_dim, list(proc.num_tokens), list(proc.scale))
        new.to_k_ip = proc.to_k_ip
        new.to_v_ip = proc.to_v_ip
        return new

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        scale: float = 1.0,
        ip_adapter_masks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.state.frames is not None and isinstance(encoder_hidden_states, tuple):
            if ip_adapter_masks is not None:
                raise ValueError("per-frame IP-Adapter tokens cannot be combined with IP-Adapter masks")
            text, ip_tokens = encoder_hidden_states
            encoder_hidden_states = (text, [self.state.select(t) for t in ip_tokens])
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, scale,
                                ip_adapter_masks)


class TransitionPipeline(AnimateDiffSparseControlNetPipeline):
    """AnimateDiff with SparseCtrl, whose keyframe latents do not depend on the global random state.

    The stock pipeline encodes SparseCtrl-RGB's keyframes with a *sample* of
    the VAE's latent distribution drawn from torch's global generator, so the
    same seed would not give the same clip twice. Here the keyframes are
    encoded at the distribution's mean (its mode), as a conditioning picture
    should be; everything else is diffusers' pipeline.
    """

    def prepare_image(self, image, width, height, device, dtype):
        if not self.controlnet.use_simplified_condition_embedding:  # scribble-type models take the pictures
            return super().prepare_image(image, width, height, device, dtype)
        pictures = self.control_image_processor.preprocess(image, height=height, width=width)
        pictures = pictures.to(device, self.vae.dtype)
        latents = self.vae.encode(2 * pictures - 1).latent_dist.mode() * self.vae.config.scaling_factor
        return latents.to(dtype).unsqueeze(0).permute(0, 2, 1, 3, 4)  # [batch, channels, frames, h, w]
