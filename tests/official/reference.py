"""An independent implementation of the official PromptPAR prediction, for the tests.

Written from reading the official code (Event-AHU/OpenPAR, PromptPAR/: AttrDataset's
valid transform, clip/model.py, models/base_block.py, models/vit.py), in float64 and
plain tensor operations on the official state dicts -- no par-prompt code. It follows
the official settings of the published command (regions, region mask, GL aggregator,
MM-Former; the text prompts sit after the 77 causal positions and are left out).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def official_pixels(images, size: int) -> torch.Tensor:
    """T.Resize((size, size)) (PIL bilinear), T.ToTensor, T.Normalize(0.5, 0.5)."""
    arrays = [np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
              for image in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return (pixels - 0.5) / 0.5


def _layer_norm(x, state, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], state[prefix + "weight"], state[prefix + "bias"], eps)


def _attention(x, weight, bias, out_weight, out_bias, heads, mask=None):
    """Multi-head self-attention with a fused [q; k; v] input projection. x: (B, L, w)."""
    batch, length, width = x.shape
    q, k, v = (x @ weight.T + bias).split(width, dim=-1)
    split = lambda t: t.reshape(batch, length, heads, width // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if mask is not None:
        scores = scores + mask
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, width)
    return out @ out_weight.T + out_bias


def _clip_block(x, s, p, heads, mask=None):
    h = _layer_norm(x, s, p + "ln_1.", 1e-5)
    x = x + _attention(h, s[p + "attn.in_proj_weight"], s[p + "attn.in_proj_bias"], s[p + "attn.out_proj.weight"],
                       s[p + "attn.out_proj.bias"], heads, mask)
    h = _layer_norm(x, s, p + "ln_2.", 1e-5) @ s[p + "mlp.c_fc.weight"].T + s[p + "mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + h @ s[p + "mlp.c_proj.weight"].T + s[p + "mlp.c_proj.bias"]


def region_mask(num_prompts: int, grid: int = 16, regions: int = 4) -> torch.Tensor:
    """Additive (L, L) mask: a region's class token and prompts see their group and their rows of patches.

    Official: groups of 1 + m tokens after [CLS, P_g]; region j's patches are the rows
    starting at 0, 3, 7, 11 of lengths 5, 6, 6, 5 (for 16 rows, 4 regions, 2 overlapping rows).
    """
    m = num_prompts // (regions + 1)
    prefix = 1 + regions + num_prompts
    length = prefix + grid * grid
    starts, rows = (0, 3, 7, 11), (5, 6, 6, 5)
    mask = torch.zeros(length, length, dtype=torch.float64)
    for region in range(1, regions + 1):
        group = range(region * (m + 1), (region + 1) * (m + 1))
        visible = torch.zeros(length, dtype=torch.bool)
        visible[list(group)] = True
        first = prefix + starts[region - 1] * grid
        visible[first:first + rows[region - 1] * grid] = True
        for row in group:
            mask[row, ~visible] = float("-inf")
    return mask


def visual_tokens(s, pixels, layers, depth, regions, heads):
    """The official VisionTransformer.forward: (B, L, d), no ln_post."""
    width = s["visual.class_embedding"].shape[0]
    patch = s["visual.conv1.weight"].shape[-1]
    x = F.conv2d(pixels, s["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    batch = x.shape[0]
    x = torch.cat([s["visual.class_embedding"].expand(batch, 1, width), x], 1) + s["visual.positional_embedding"]
    if regions:
        x = torch.cat([x[:, :1], s["visual.part_class_embedding"].expand(batch, -1, -1), x[:, 1:]], 1)
    x = _layer_norm(x, s, "visual.ln_pre.", 1e-5)
    prompts = s["visual.transformer.prompt_deep"][:, :, 0]  # (depth, P, w)
    num_prompts = prompts.shape[1]
    m = num_prompts // (regions + 1)
    mask = region_mask(num_prompts, int(math.isqrt(x.shape[1] - 1 - regions)), regions) if regions else None
    for layer in range(layers):
        if layer < depth:
            tokens = list(x.unbind(1))
            if layer == 0:  # after CLS and after each region class token, insert that group's prompts
                class_tokens, patches = tokens[:1 + regions], tokens[1 + regions:]
                tokens = []
                for group, cls in enumerate(class_tokens):
                    tokens += [cls] + [p.expand(batch, width) for p in prompts[layer, group * m:(group + 1) * m]]
                tokens += patches
            else:  # overwrite each group's prompt slots
                for group in range(regions + 1):
                    for i in range(m):
                        tokens[group * (m + 1) + 1 + i] = prompts[layer, group * m + i].expand(batch, width)
            x = torch.stack(tokens, 1)
        x = _clip_block(x, s, f"visual.transformer.resblocks.{layer}.", heads, mask)
    return x @ s["visual.proj"]


def text_features(s, token_ids, layers, heads):
    """The official CLIP.encode_text: EOT (largest id) output of ln_final, projected: (N, d)."""
    x = s["token_embedding.weight"][token_ids] + s["positional_embedding"]
    length = x.shape[1]
    causal = torch.full((length, length), float("-inf"), dtype=torch.float64).triu(1)
    for layer in range(layers):
        x = _clip_block(x, s, f"transformer.resblocks.{layer}.", heads, causal)
    x = _layer_norm(x, s, "ln_final.", 1e-5)
    return x[torch.arange(x.shape[0]), token_ids.argmax(-1)] @ s["text_projection"]


def _timm_block(x, c, p, heads):
    batch, length, width = x.shape
    h = _layer_norm(x, c, p + "norm1.", 1e-6)
    qkv = (h @ c[p + "attn.qkv.weight"].T + c[p + "attn.qkv.bias"]).reshape(batch, length, 3, heads, width // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1) * (width // heads) ** -0.5).softmax(-1)
    x = x + (attn @ v).transpose(1, 2).reshape(batch, length, width) @ c[p + "attn.proj.weight"].T + c[
        p + "attn.proj.bias"]
    h = F.gelu(_layer_norm(x, c, p + "norm2.", 1e-6) @ c[p + "mlp.fc1.weight"].T + c[p + "mlp.fc1.bias"])
    return x + h @ c[p + "mlp.fc2.weight"].T + c[p + "mlp.fc2.bias"]


def official_probabilities(clip_state, classifier_state, token_ids, pixels, sizes) -> torch.Tensor:
    """sigmoid(bn_logits) of the official TransformerClassifier in eval mode: (B, N)."""
    s = {k: v.double() for k, v in clip_state.items()}
    c = {k: v.double() for k, v in classifier_state.items()}
    vis = visual_tokens(s, pixels.double(), sizes.vision_layers, sizes.depth, sizes.regions,
                        sizes.vision_width // 64)
    text = text_features(s, token_ids, sizes.text_layers, sizes.text_width // 64)
    batch, n = vis.shape[0], text.shape[0]
    words = (text @ c["word_embed.weight"].T + c["word_embed.bias"]).expand(batch, n, -1)
    x = torch.cat([words, vis @ c["visual_embed.weight"].T + c["visual_embed.bias"]], 1)
    for i in range(sizes.fusion_blocks):
        x = _timm_block(x, c, f"blocks.{i}.", sizes.fusion_width // 64)
    x = _layer_norm(x, c, "norm.", 1e-6)
    logits = torch.stack([x[:, i] @ c[f"weight_layer.{i}.weight"][0] + c[f"weight_layer.{i}.bias"][0]
                          for i in range(n)], 1)
    logits = (logits - c["bn.running_mean"]) / torch.sqrt(c["bn.running_var"] + 1e-5) * c["bn.weight"] + c["bn.bias"]
    return torch.sigmoid(logits)
