"""Checkpoints in the format of the official PromptPAR code, built from small random models.

Key names, layouts and the container follow the official code (Event-AHU/OpenPAR,
PromptPAR/): ``clip/model.py`` for the CLIP state dict (OpenAI layout plus the prompts,
the region class tokens and the aggregator), ``models/base_block.py`` and
``models/vit.py`` for the classifier, ``train.py`` for the saved dict (epoch, SGD state,
classifier, CLIP, an EasyDict ``result`` of numpy values). The CLIP tensors that the
official ``convert_weights`` halves are stored in float16, the rest in float32, and
every storage is tagged ``cuda:0`` as on the authors' GPUs.
"""

from __future__ import annotations

import gzip
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SENTENCE_WORDS = (
    "a female pedestrian over the age of between ages and under seen from front side back wearing hat glasses "
    "with handbag shoulder bag backpack holding objects in short-sleeved long-sleeved stride upper wear logo "
    "plaid splice striped lower patterned coat trousers shorts skirts dresses boots"
).split()


@dataclass
class Sizes:
    vision_width: int = 128
    vision_layers: int = 3
    patch: int = 2
    grid: int = 16
    text_width: int = 128
    text_layers: int = 2
    projection: int = 32
    context: int = 77
    regions: int = 4
    prompts_per_group: int = 2
    depth: int = 2
    fusion_width: int = 128
    fusion_blocks: int = 1
    attributes: int = 26
    aggregator: bool = True
    text_prompts: int = 3
    vocab: int = 0  # set from the tokenizer

    @property
    def image(self) -> int:
        return self.grid * self.patch


# --------------------------------------------------------------------------- tokenizer


def bpe_merges(words=SENTENCE_WORDS) -> list[tuple[str, str]]:
    """Merges that join each word's letters left to right (a valid, tiny BPE table)."""
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in words:
        for piece in word.lower().replace("-", " - ").split():
            symbols = list(piece)
            symbols[-1] += "</w>"
            while len(symbols) > 1:
                pair = (symbols[0], symbols[1])
                if pair not in seen:
                    seen.add(pair)
                    merges.append(pair)
                symbols = [pair[0] + pair[1], *symbols[2:]]
    return merges


def write_bpe_file(path: Path, merges) -> Path:
    """A file in the format of OpenAI's bpe_simple_vocab_16e6.txt.gz."""
    text = "\"bpe_simple_vocab_16e6.txt#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)
    return path


def vocabulary(merges) -> dict[str, int]:
    """The vocabulary the official SimpleTokenizer builds from ``merges``, written here from its description."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def reference_tokenizer(merges):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=vocabulary(merges), merges=list(merges), bos_token="<|startoftext|>",
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def official_token_ids(tokenizer, sentences, context: int = 77) -> torch.Tensor:
    """clip.tokenize: [SOT, tokens, EOT] zero-padded to the context length."""
    rows = tokenizer(list(sentences))["input_ids"]
    return torch.tensor([ids + [0] * (context - len(ids)) for ids in rows])


# --------------------------------------------------------------------------- state dicts


def _normal(generator, *shape, std=None):
    fan_in = shape[-1] if len(shape) > 1 else 1
    return torch.randn(*shape, generator=generator) * (std if std is not None else fan_in ** -0.5)


def _norm(generator, width):
    return 1 + 0.1 * torch.randn(width, generator=generator), 0.1 * torch.randn(width, generator=generator)


def _resblocks(state, prefix, layers, width, generator):
    for i in range(layers):
        p = f"{prefix}{i}."
        state[p + "attn.in_proj_weight"] = _normal(generator, 3 * width, width)
        state[p + "attn.in_proj_bias"] = _normal(generator, 3 * width, std=0.1)
        state[p + "attn.out_proj.weight"] = _normal(generator, width, width)
        state[p + "attn.out_proj.bias"] = _normal(generator, width, std=0.1)
        state[p + "ln_1.weight"], state[p + "ln_1.bias"] = _norm(generator, width)
        state[p + "mlp.c_fc.weight"] = _normal(generator, 4 * width, width)
        state[p + "mlp.c_fc.bias"] = _normal(generator, 4 * width, std=0.1)
        state[p + "mlp.c_proj.weight"] = _normal(generator, width, 4 * width)
        state[p + "mlp.c_proj.bias"] = _normal(generator, width, std=0.1)
        state[p + "ln_2.weight"], state[p + "ln_2.bias"] = _norm(generator, width)


def official_clip_state(s: Sizes, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w, t, d = s.vision_width, s.text_width, s.projection
    state = {
        "visual.conv1.weight": _normal(g, w, 3, s.patch, s.patch, std=(3 * s.patch ** 2) ** -0.5),
        "visual.class_embedding": _normal(g, w, std=w ** -0.5),
        "visual.positional_embedding": _normal(g, s.grid ** 2 + 1, w, std=w ** -0.5),
        "visual.transformer.prompt_deep": torch.empty(s.depth, s.prompts_per_group * (s.regions + 1), 1, w).uniform_(
            -0.5, 0.5, generator=g),
    }
    if s.regions:
        state["visual.part_class_embedding"] = _normal(g, s.regions, w, std=w ** -0.5)
    state["visual.ln_pre.weight"], state["visual.ln_pre.bias"] = _norm(g, w)
    _resblocks(state, "visual.transformer.resblocks.", s.vision_layers, w, g)
    state["visual.ln_post.weight"], state["visual.ln_post.bias"] = _norm(g, w)
    state["visual.proj"] = _normal(g, w, d, std=w ** -0.5)
    state["token_embedding.weight"] = _normal(g, s.vocab, t, std=0.5)
    state["positional_embedding"] = _normal(g, s.context, t, std=0.1)
    _resblocks(state, "transformer.resblocks.", s.text_layers, t, g)
    state["transformer.prompt_text_deep"] = torch.randn(s.text_layers, s.text_prompts, s.attributes, t, generator=g)
    state["ln_final.weight"], state["ln_final.bias"] = _norm(g, t)
    state["text_projection"] = _normal(g, t, d, std=t ** -0.5)
    state["logit_scale"] = torch.tensor(4.6052)
    if s.aggregator:
        state["softmax_model.temperature"] = torch.tensor(0.8)
        state["agg_bn.weight"], state["agg_bn.bias"] = _norm(g, s.attributes)
        state["agg_bn.running_mean"] = 0.1 * torch.randn(s.attributes, generator=g)
        state["agg_bn.running_var"] = torch.rand(s.attributes, generator=g) + 0.5
        state["agg_bn.num_batches_tracked"] = torch.tensor(1234)
    # What clip.model.convert_weights halves: conv and linear weights, attention in-projections, projections.
    halved = ("conv1.weight", "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias", "c_fc.weight",
              "c_fc.bias", "c_proj.weight", "c_proj.bias", "visual.proj", "text_projection")
    return {k: (v.half() if k.endswith(halved) else v) for k, v in state.items()}


def official_classifier_state(s: Sizes, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f, d, n = s.fusion_width, s.projection, s.attributes
    state = {}
    for name in ("word_embed", "visual_embed"):
        state[f"{name}.weight"] = _normal(g, f, d)
        state[f"{name}.bias"] = _normal(g, f, std=0.1)
    for i in range(s.fusion_blocks):
        p = f"blocks.{i}."
        state[p + "norm1.weight"], state[p + "norm1.bias"] = _norm(g, f)
        state[p + "attn.qkv.weight"] = _normal(g, 3 * f, f)
        state[p + "attn.qkv.bias"] = _normal(g, 3 * f, std=0.1)
        state[p + "attn.proj.weight"] = _normal(g, f, f)
        state[p + "attn.proj.bias"] = _normal(g, f, std=0.1)
        state[p + "norm2.weight"], state[p + "norm2.bias"] = _norm(g, f)
        state[p + "mlp.fc1.weight"] = _normal(g, 4 * f, f)
        state[p + "mlp.fc1.bias"] = _normal(g, 4 * f, std=0.1)
        state[p + "mlp.fc2.weight"] = _normal(g, f, 4 * f)
        state[p + "mlp.fc2.bias"] = _normal(g, f, std=0.1)
    state["norm.weight"], state["norm.bias"] = _norm(g, f)
    for i in range(n):
        state[f"weight_layer.{i}.weight"] = _normal(g, 1, f)
        state[f"weight_layer.{i}.bias"] = _normal(g, 1, std=0.1)
    state["bn.weight"], state["bn.bias"] = _norm(g, n)
    state["bn.running_mean"] = 0.3 * torch.randn(n, generator=g)
    state["bn.running_var"] = torch.rand(n, generator=g) + 0.5
    state["bn.num_batches_tracked"] = torch.tensor(5678)
    return state


# --------------------------------------------------------------------------- the file


class EasyDict(dict):
    """Stand-in for easydict.EasyDict (a dict whose items are also attributes); pickled under that name."""

    def __init__(self, values=None):
        super().__init__()
        for key, value in (values or {}).items():
            setattr(self, key, value)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        self[name] = value


EasyDict.__module__ = "easydict"


def fake_result() -> EasyDict:
    return EasyDict({
        "label_pos_recall": np.linspace(0.5, 0.9, 26), "label_neg_recall": np.linspace(0.7, 0.99, 26),
        "label_prec": np.full(26, 0.8), "label_acc": np.full(26, 0.7), "label_f1": np.full(26, 0.75),
        "ma": np.float64(0.8123), "instance_acc": np.float64(0.7012), "instance_prec": np.float64(0.8234),
        "instance_recall": np.float64(0.8645), "instance_f1": np.float64(0.8401),
    })


@dataclass
class OfficialFile:
    path: Path
    clip: dict = field(default_factory=dict)
    classifier: dict = field(default_factory=dict)
    sizes: Sizes = field(default_factory=Sizes)


def optimizer_state(classifier: dict) -> dict:
    params = [torch.nn.Parameter(v.clone()) for k, v in classifier.items() if v.is_floating_point()]
    optimizer = torch.optim.SGD([{"params": params, "lr": 8e-3, "weight_decay": 1e-4}], lr=8e-3, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return optimizer.state_dict()


def save_official(path: Path, monkeypatch, clip: dict, classifier: dict, *, clip_key: str = "clip_model",
                  extra: dict | None = None, legacy: bool = False, result=True) -> Path:
    """torch.save the dict of the official train.py, storages tagged cuda:0."""
    blob = {"epoch": 21, "optimizer": optimizer_state(classifier), "model_state_dict": classifier, clip_key: clip}
    if result is True:
        blob["result"] = fake_result()
    elif result is not None:
        blob["result"] = result
    blob.update(extra or {})
    module = types.ModuleType("easydict")
    module.EasyDict = EasyDict
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "easydict", module)
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(blob, path, _use_new_zipfile_serialization=not legacy)
    return path
