"""Trainable parameters by component and saved-adapter size of PromptPAR at full size.

    python benchmarks/model_size.py                 # meta device: counts and planned bytes
    python benchmarks/model_size.py --save          # also build ViT-L/14 with random weights,
                                                    # save it and measure the files

Paper Table V: 3.27 M trainable parameters for ViT-L/14 (0.75 % of full fine-tuning),
2.30 M for ViT-B/16 (1.46 %). Issue bound: all weight files of a ViT-L/14 model with 51
attributes at most 15 MB (fp32).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from par_prompt import PromptPARConfig, PromptPARModel
from par_prompt.modeling import sentence_token_ids
from par_prompt.backbone_sizes import (
    CLIP_VIT_B16_SIZES,
    CLIP_VIT_L14_SIZES,
    VIT_B16_SIZES,
    clip_config_from_sizes,
    vit_config_from_sizes,
)
from par_prompt.tiny_backbones import tiny_clip_tokenizer

ATTRIBUTES = [f"attribute{i}" for i in range(51)]  # RAPv1's 51


def build(clip_sizes, clip_id: str, device: str) -> PromptPARModel:
    config = PromptPARConfig(
        attributes=ATTRIBUTES, sentences=[f"A pedestrian with {a}." for a in ATTRIBUTES],
        clip_name_or_path=clip_id, clip_config=clip_config_from_sizes(clip_sizes),
        fusion_name_or_path="google/vit-base-patch16-224", fusion_config=vit_config_from_sizes(VIT_B16_SIZES),
    )
    with torch.device(device):
        return PromptPARModel(config)


def breakdown(model: PromptPARModel) -> dict[str, int]:
    parts = {"prompts + region tokens": sum(p.numel() for p in model.prompt_parameters())}
    for name in ("text_projection", "visual_projection", "fusion", "heads", "aggregator"):
        parts[name] = sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", action="store_true", help="build ViT-L/14 with random weights and save it")
    args = parser.parse_args()
    for label, sizes, clip_id in (("ViT-L/14", CLIP_VIT_L14_SIZES, "openai/clip-vit-large-patch14"),
                                  ("ViT-B/16", CLIP_VIT_B16_SIZES, "openai/clip-vit-base-patch16")):
        model = build(sizes, clip_id, "meta")
        parts = breakdown(model)
        trainable = sum(parts.values())
        total = sum(p.numel() for p in model.parameters())
        print(f"== {label}, {len(ATTRIBUTES)} attributes, defaults ==")
        for name, count in parts.items():
            print(f"  {name:<26}{count:>12,}")
        print(f"  {'trainable':<26}{trainable:>12,}  ({100 * trainable / total:.2f}% of {total:,})")
        print(f"  planned weight files: {model.saved_weight_bytes() / 1e6:.2f} MB")
    if args.save:
        model = build(CLIP_VIT_L14_SIZES, "openai/clip-vit-large-patch14", "cpu")
        model.set_sentence_token_ids(sentence_token_ids(tiny_clip_tokenizer(), model.config.sentences))
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            sizes = {os.path.relpath(os.path.join(root, f), tmp): os.path.getsize(os.path.join(root, f))
                     for root, _, files in os.walk(tmp) for f in files}
        weights = sum(size for name, size in sizes.items() if name.endswith(".safetensors"))
        print("== ViT-L/14 saved (random weights) ==")
        for name, size in sorted(sizes.items()):
            print(f"  {name:<42}{size:>12,} B")
        print(f"  weight files together: {weights / 1e6:.2f} MB (bound: 15 MB)")


if __name__ == "__main__":
    main()
