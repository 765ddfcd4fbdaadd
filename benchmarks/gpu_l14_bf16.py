#!/usr/bin/env python
"""PromptPAR at the paper's size on one GPU: CLIP ViT-L/14 + ViT-B/16 fusion, bf16, batch 64.

Measures, with random weights (no download):

- training throughput: images/s of full steps (bf16 autocast forward, weighted BCE + GL
  loss, backward, gradient-norm clip 10, SGD with the paper's two parameter groups);
- inference throughput: images/s of eval-mode forward passes (text features cached);
- peak GPU memory of each phase (``torch.cuda.max_memory_allocated``).

Warm-up steps are excluded from the timings. The whole run takes well under 5 minutes on
one H100 (model construction on the GPU, a few warm-up and timed iterations). A compact
summary is printed and the numbers are written as JSON to ``$OUT/gpu_l14_bf16.json``
when ``OUT`` is set, else to ``./gpu_l14_bf16.json``.

Needs only torch, transformers, peft, safetensors, numpy and pillow (not datasets,
evaluate or accelerate's training API); no network. ``--smoke`` runs tiny sizes for
one step on whatever device there is (CPU included), to check the script itself.

    python benchmarks/gpu_l14_bf16.py            # on the GPU machine
    python benchmarks/gpu_l14_bf16.py --smoke    # anywhere, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "src" / "par_prompt").is_dir():
    sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

import torch  # noqa: E402

PA100K_ATTRIBUTES = [
    "Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
    "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride", "UpperLogo",
    "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts",
    "Skirt&Dress", "boots",
]


def build_model(smoke: bool, device: torch.device):
    """PromptPARModel with random weights: ViT-L/14 + ViT-B/16 fusion (paper), or tiny sizes."""
    from par_prompt import PromptPARConfig, PromptPARModel
    from par_prompt.modeling import sentence_token_ids
    from par_prompt.backbone_sizes import (
        CLIP_VIT_L14_SIZES,
        VIT_B16_SIZES,
        clip_config_from_sizes,
        vit_config_from_sizes,
    )
    from par_prompt.tiny_backbones import tiny_clip_config, tiny_clip_tokenizer, tiny_vit_config

    if smoke:
        clip_config, fusion_config = tiny_clip_config(), tiny_vit_config()
        settings = dict(prompts_per_group=2)
    else:
        clip_config, fusion_config = clip_config_from_sizes(CLIP_VIT_L14_SIZES), vit_config_from_sizes(VIT_B16_SIZES)
        settings = {}
    config = PromptPARConfig(attributes=PA100K_ATTRIBUTES, dataset="pa100k", clip_config=clip_config,
                             fusion_config=fusion_config, **settings)
    torch.manual_seed(0)
    with device:  # build the weights on the device directly (fast random init of 430M parameters)
        model = PromptPARModel(config)
    # The tiny BPE tokenizer covers the sentence words; its ids (< 1,100) fit any CLIP vocabulary,
    # and its sentence lengths (which set the text tower's cost) are close to CLIP's own.
    model.set_sentence_token_ids(sentence_token_ids(tiny_clip_tokenizer(), model.config.sentences))
    model.set_positive_ratios(torch.full((len(PA100K_ATTRIBUTES),), 0.3))
    return model.to(device)


def sgd(model) -> torch.optim.Optimizer:
    """The paper's optimiser (docs/method.md §8), as par_prompt.training.build_optimizer builds it."""
    return torch.optim.SGD([{"params": model.prompt_parameters(), "lr": 4e-3},
                            {"params": model.head_parameters(), "lr": 8e-3}],
                           lr=8e-3, momentum=0.9, weight_decay=1e-4)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_phase(step, warmup: int, iterations: int, device: torch.device) -> tuple[float, list[float]]:
    for _ in range(warmup):
        step()
    synchronize(device)
    reset_peak(device)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sum(times), times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one step, any device")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (smoke: 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations per phase (default 3; smoke 0)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 10; smoke 1)")
    parser.add_argument("--infer-steps", type=int, default=None, help="timed inference batches (default 20; smoke 1)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    batch = args.batch_size or (4 if smoke else 64)
    warmup = args.warmup if args.warmup is not None else (0 if smoke else 3)
    train_steps = args.train_steps or (1 if smoke else 10)
    infer_steps = args.infer_steps or (1 if smoke else 20)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif not smoke:
        print("warning: no GPU found; this full-size run on the CPU will be very slow (use --smoke).", flush=True)
    started = time.perf_counter()
    model = build_model(smoke, device)
    build_seconds = time.perf_counter() - started
    size = model.config.get_clip_config().vision_config.image_size
    generator = torch.Generator(device=device).manual_seed(0)
    pixels = torch.randn(batch, 3, size, size, device=device, generator=generator)
    labels = torch.randint(0, 2, (batch, len(PA100K_ATTRIBUTES)), device=device, generator=generator)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = sgd(model)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def train_step():
        with autocast:
            loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    train_seconds, train_times = time_phase(train_step, warmup, train_steps, device)
    train_peak = peak_gib(device)

    model.eval()

    def infer_step():
        with torch.inference_mode(), autocast:
            model(pixel_values=pixels).logits.float().sigmoid()

    infer_seconds, infer_times = time_phase(infer_step, warmup, infer_steps, device)
    infer_peak = peak_gib(device)

    import transformers

    result = {
        "benchmark": "gpu_l14_bf16" + ("_smoke" if smoke else ""),
        "model": "tiny CLIP + tiny ViT (smoke)" if smoke else "CLIP ViT-L/14 + ViT-B/16 fusion, random weights",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": "bf16 autocast, fp32 weights",
        "batch_size": batch,
        "warmup_iterations": warmup,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "train": {"steps": train_steps, "images_per_second": batch * train_steps / train_seconds,
                  "seconds_per_step": train_seconds / train_steps, "step_seconds": train_times,
                  "peak_memory_gib": train_peak},
        "inference": {"batches": infer_steps, "images_per_second": batch * infer_steps / infer_seconds,
                      "seconds_per_batch": infer_seconds / infer_steps, "peak_memory_gib": infer_peak},
        "build_seconds": build_seconds,
        "total_seconds": time.perf_counter() - started,
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    memory = lambda v: "n/a (CPU)" if v is None else f"{v:.1f} GiB"  # noqa: E731
    print(f"{result['model']} on {result['device']}, batch {batch}, {result['dtype']}")
    print(f"  train:     {result['train']['images_per_second']:8.1f} img/s  "
          f"({1000 * result['train']['seconds_per_step']:.0f} ms/step)  peak {memory(train_peak)}")
    print(f"  inference: {result['inference']['images_per_second']:8.1f} img/s  "
          f"({1000 * result['inference']['seconds_per_batch']:.0f} ms/batch)  peak {memory(infer_peak)}")
    print(f"  model built in {build_seconds:.1f} s; total {result['total_seconds']:.1f} s")
    out_dir = Path(os.environ.get("OUT") or ".")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['benchmark']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  wrote {path}")
    return result


if __name__ == "__main__":
    main()
