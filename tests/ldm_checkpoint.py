"""Single-file checkpoints in the original Stable Diffusion (LDM) layout, made from a diffusers pipeline.

Civitai-style ``.safetensors`` checkpoints hold the UNet, VAE and text
encoder(s) in one file, under the names of the original CompVis/Stability code
(``model.diffusion_model.input_blocks.1.0.in_layers.0.weight``...).
``save_ldm_checkpoint`` writes the tiny test models that way, so that importing
and loading a single file runs through diffusers' real single-file converter.
The names are the inverse of diffusers' ``convert_ldm_*_checkpoint``: they
depend on the UNet's ``layers_per_block``, so the same rules fit the tiny
models and the real ones.
"""

from __future__ import annotations

from pathlib import Path

import torch

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    layer, _, param = rest.partition(".")
    return f"{_RESNET.get(layer, layer)}.{param}"


def unet_to_ldm(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    per = config["layers_per_block"]
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    up_with_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        head = ".".join(parts[:2])
        if parts[0] in fixed:  # conv_in.weight
            new = f"{fixed[parts[0]]}.{parts[1]}"
        elif head in fixed:  # time_embedding.linear_1.weight
            new = f"{fixed[head]}.{parts[2]}"
        elif parts[0] == "down_blocks":
            i, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":  # down_blocks.i.downsamplers.0.conv.weight
                new = f"input_blocks.{(i + 1) * (per + 1)}.0.op.{parts[5]}"
            else:
                j, rest = int(parts[3]), ".".join(parts[4:])
                block = i * (per + 1) + j + 1
                new = f"input_blocks.{block}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{block}.1.{rest}"
        elif parts[0] == "mid_block":
            j, rest = int(parts[2]), ".".join(parts[3:])
            new = f"middle_block.{2 * j}.{_resnet(rest)}" if parts[1] == "resnets" else f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            i, kind = int(parts[1]), parts[2]
            if kind == "upsamplers":
                slot = 2 if i in up_with_attention else 1
                new = f"output_blocks.{i * (per + 1) + per}.{slot}.conv.{parts[5]}"
            else:
                j, rest = int(parts[3]), ".".join(parts[4:])
                block = i * (per + 1) + j
                new = f"output_blocks.{block}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{block}.1.{rest}"
        else:
            raise KeyError(f"no LDM name for the UNet tensor {key}")
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    levels = len(config["up_block_types"])
    renames = {"conv_norm_out": "norm_out", "conv_shortcut": "nin_shortcut"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in ("quant_conv", "post_quant_conv") or parts[1] in ("conv_in", "conv_out", "conv_norm_out"):
            new = ".".join(renames.get(p, p) for p in parts)
        elif parts[1] == "down_blocks":
            i = parts[2]
            if parts[3] == "downsamplers":
                new = f"{parts[0]}.down.{i}.downsample.conv.{parts[-1]}"
            else:
                new = f"{parts[0]}.down.{i}.block.{parts[4]}." + ".".join(renames.get(p, p) for p in parts[5:])
        elif parts[1] == "up_blocks":
            i = levels - 1 - int(parts[2])
            if parts[3] == "upsamplers":
                new = f"{parts[0]}.up.{i}.upsample.conv.{parts[-1]}"
            else:
                new = f"{parts[0]}.up.{i}.block.{parts[4]}." + ".".join(renames.get(p, p) for p in parts[5:])
        elif parts[1] == "mid_block" and parts[2] == "resnets":
            new = f"{parts[0]}.mid.block_{int(parts[3]) + 1}." + ".".join(renames.get(p, p) for p in parts[4:])
        elif parts[1] == "mid_block" and parts[2] == "attentions":
            rest = ".".join(parts[4:])
            for old, ldm in _VAE_ATTENTION.items():
                if rest.startswith(old + "."):
                    rest = ldm + rest[len(old):]
                    break
            new = f"{parts[0]}.mid.attn_1.{rest}"
            if value.ndim == 2:  # the original code uses 1x1 convolutions here
                value = value[:, :, None, None]
        else:
            raise KeyError(f"no LDM name for the VAE tensor {key}")
        out["first_stage_model." + new] = value
    return out


def open_clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection's tensors under OpenCLIP's names (SDXL's second text encoder)."""
    out, qkv = {}, {}
    simple = {"text_model.embeddings.position_embedding.weight": "positional_embedding",
              "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
              "text_model.final_layer_norm.weight": "ln_final.weight",
              "text_model.final_layer_norm.bias": "ln_final.bias"}
    for key, value in state.items():
        if key in simple:
            out[prefix + simple[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            rest = key[len("text_model.encoder.layers."):]
            layer, _, name = rest.partition(".")
            base = f"{prefix}transformer.resblocks.{layer}."
            if name.startswith("self_attn.") and name.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                qkv.setdefault((base, name.split(".")[-1]), {})[name.split(".")[1]] = value
                continue
            name = (name.replace("self_attn.out_proj", "attn.out_proj").replace("layer_norm1", "ln_1")
                    .replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[base + name] = value
        elif key.endswith("position_ids"):
            continue
        else:
            raise KeyError(f"no OpenCLIP name for the text encoder tensor {key}")
    for (base, param), parts in qkv.items():
        out[f"{base}attn.in_proj_{param}"] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def _clip_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 names a CLIP text model's tensors without the ``text_model.`` that checkpoints use."""
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
            for k, v in state.items() if not k.endswith("position_ids")}


def ldm_state_dict(pipe) -> dict[str, torch.Tensor]:
    """The whole pipeline's weights in the LDM layout: SD1.5 (one CLIP) or SDXL (CLIP-L and OpenCLIP bigG)."""
    state = {}
    state.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    clip = _clip_names(pipe.text_encoder.state_dict())
    if getattr(pipe, "text_encoder_2", None) is None:
        state.update({"cond_stage_model.transformer." + k: v for k, v in clip.items()})
    else:
        state.update({"conditioner.embedders.0.transformer." + k: v for k, v in clip.items()})
        state.update(open_clip_to_ldm(_clip_names(pipe.text_encoder_2.state_dict()), "conditioner.embedders.1.model."))
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def save_ldm_checkpoint(pipe, path: str | Path) -> Path:
    """Write ``pipe`` as one ``.safetensors`` checkpoint in the original Stable Diffusion layout."""
    from safetensors.torch import save_file

    save_file(ldm_state_dict(pipe), str(path))
    return Path(path)
