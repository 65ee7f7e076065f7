"""A character's reference photo, through an IP-Adapter face model (diffusers' ``load_ip_adapter``).

The photo is read by the adapter's CLIP image encoder (OpenCLIP ViT-H/14),
turned into a few tokens by the adapter's image projection (the "plus"
resampler), and those tokens are attended by every cross-attention layer next
to the text, through the adapter's own key and value projections, weighted by
the character's photo strength (:mod:`..attention.regions` does the
attention). In a panel of that character alone (its references and its solo
panels) the photo acts on the whole picture; in a shared panel only inside the
character's region.

Loading goes through diffusers' own ``load_ip_adapter`` (the file layout of
``h94/IP-Adapter``), then the adapter's parts are taken out of the UNet and the
UNet's processors put back: the UNet stays as it was for every picture that
shows no photo, and the photo's tokens are computed once per photo instead of
at every UNet call.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...project.limits import MAX_PHOTO_STRENGTH
from ..errors import InputError, ModelError
from ..models.base import has_file, is_path
from .regions import photo_hash

#: Where the face IP-Adapter of each architecture lives: (repository, weights file, image encoder folder).
FACE_ADAPTERS = {
    "sdxl": ("h94/IP-Adapter", "sdxl_models/ip-adapter-plus-face_sdxl_vit-h.safetensors", "models/image_encoder"),
    "sd15": ("h94/IP-Adapter", "models/ip-adapter-plus-face_sd15.safetensors", "models/image_encoder"),
}
#: The catalog entries (resources/models.json) the Models dialog offers for them.
CATALOG_IDS = {"sdxl": ("ip-adapter-plus-face-sdxl", "ip-adapter-image-encoder"),
               "sd15": ("ip-adapter-plus-face-sd15", "ip-adapter-image-encoder")}
_ARCH_WORDS = {"sdxl": "SDXL", "sd15": "SD 1.5"}


def strength_problem(strength: float) -> str | None:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= MAX_PHOTO_STRENGTH:
        return f"a photo strength must be a number from 0 to {MAX_PHOTO_STRENGTH:g}"
    return None


def open_photo(data: bytes, name: str):
    """The photo as an RGB PIL image; InputError in plain words when it is not a picture."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(f"The reference photo of [{name}] is empty; choose the photo again.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"The reference photo of [{name}] cannot be read as a picture ({exc}); "
                         "choose a PNG or JPEG photo.") from None


def missing_photo_models(arch: str, source: str = "") -> list[str]:
    """The files reference photos need that are not on this computer (empty: all there). Reads no weights."""
    repo, weights, encoder = FACE_ADAPTERS[arch]
    source = source or repo
    needed = [weights, f"{encoder}/config.json"]
    return [f for f in needed if not has_file(source, f)]


@dataclass
class PhotoTokens:
    """A photo's IP-Adapter tokens: with the photo (``cond``) and with a blank image (``uncond``), (1, T, C)."""

    cond: torch.Tensor
    uncond: torch.Tensor


@dataclass
class PhotoAdapter:
    """An IP-Adapter taken out of a UNet: image encoder, image projection and each layer's key/value maps."""

    image_encoder: Any
    feature_extractor: Any
    projection: Any
    layers: dict[str, tuple[Any, Any]]  # cross-attention module name -> (to_k_ip, to_v_ip)
    source: str
    weights: str
    plus: bool  # a "plus" adapter reads the encoder's penultimate hidden states, a plain one its image embedding
    _cache: dict[str, PhotoTokens] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, pipe: Any, arch: str, source: str = "", allow_download: bool = False) -> PhotoAdapter:
        """Load the face IP-Adapter of ``arch`` from ``source`` (a folder laid out like h94/IP-Adapter, or a Hub
        id in the Hugging Face cache; empty: h94/IP-Adapter); ModelError (missing model) in one sentence."""
        repo, weights, encoder = FACE_ADAPTERS[arch]
        source = source or repo
        missing = [] if allow_download else missing_photo_models(arch, source)
        if missing:
            names = " and ".join(f'"{i}"' for i in CATALOG_IDS[arch])
            raise ModelError(
                f"Reference photos with {_ARCH_WORDS[arch]} models need the IP-Adapter face model and its image "
                f"encoder ({source}: {', '.join(missing)}), which are not on this computer; download {names} in "
                "the Models dialog, or clear the characters' photos.")
        return cls.from_pipe(pipe, source, weights, encoder, allow_download)

    @classmethod
    def from_pipe(cls, pipe: Any, source: Any, weights: str, encoder: str | None,
                  allow_download: bool = False) -> PhotoAdapter:
        """Load through the pipeline's ``load_ip_adapter`` (``source`` may also be a state dict, then the
        pipeline must already hold an image encoder), then take the parts out of the UNet."""
        from diffusers.models.embeddings import ImageProjection

        unet = pipe.unet
        saved = dict(unet.attn_processors)
        local = isinstance(source, dict) or is_path(str(source))
        where = source if isinstance(source, dict) else (str(Path(source).expanduser()) if local else source)
        folder, _, name = weights.rpartition("/")
        try:
            pipe.load_ip_adapter(where, folder or None, name, image_encoder_folder=encoder,
                                 local_files_only=local or not allow_download)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            pipe.unet.set_attn_processor(saved)
            shown = "the given weights" if isinstance(source, dict) else f"{source} ({weights})"
            raise ModelError(f"The IP-Adapter {shown} could not be loaded into this model: {exc}") from exc
        try:
            projection = unet.encoder_hid_proj.image_projection_layers[0]
            layers = {}
            for proc_name, proc in unet.attn_processors.items():
                if hasattr(proc, "to_k_ip"):
                    layers[proc_name.removesuffix(".processor")] = (proc.to_k_ip[0], proc.to_v_ip[0])
            image_encoder, feature_extractor = pipe.image_encoder, pipe.feature_extractor
        finally:
            pipe.unload_ip_adapter()
            unet.set_attn_processor(saved)
        if image_encoder is None:
            raise ModelError("The IP-Adapter's image encoder was not found; download the IP-Adapter image encoder "
                             "in the Models dialog.")
        if feature_extractor is None:
            from transformers import CLIPImageProcessor

            size = image_encoder.config.image_size
            feature_extractor = CLIPImageProcessor(size=size, crop_size=size)
        plus = not isinstance(projection, ImageProjection)
        return cls(image_encoder, feature_extractor, projection, layers, str(source if not isinstance(source, dict)
                                                                                   else "state dict"), weights, plus)

    @torch.no_grad()
    def tokens(self, data: bytes, name: str) -> PhotoTokens:
        """The IP-Adapter tokens of a photo (cached by its hash); InputError when it is not a picture."""
        key = photo_hash(data)
        if key in self._cache:
            return self._cache[key]
        image = open_photo(data, name)
        param = next(self.image_encoder.parameters())
        pixels = self.feature_extractor(images=image, return_tensors="pt").pixel_values.to(param.device, param.dtype)
        if self.plus:  # as diffusers: the penultimate hidden states, and those of a black image for the negative
            cond = self.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
            uncond = self.image_encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        else:
            cond = self.image_encoder(pixels).image_embeds
            uncond = torch.zeros_like(cond)
        proj = next(self.projection.parameters())
        out = PhotoTokens(self.projection(cond.to(proj.dtype)), self.projection(uncond.to(proj.dtype)))
        self._cache[key] = out
        return out
