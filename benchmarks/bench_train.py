#!/usr/bin/env python
"""Training throughput of PromptPAR on this machine: images/s and peak memory per step.

Two models, random weights (speed does not depend on the values):

- ``tiny``: the demo's model (:class:`par_prompt.demo.DemoSettings`: CLIP 64 px,
  patch 8, width 64, 3 layers per tower; fusion width 64 with the demo's MLP fusion,
  ``fusion_layers=0``), 18 attributes (the synthetic set), 4 prompts per group, batch 32
  (the demo's defaults);
- ``vitb16``: CLIP ViT-B/16 + ViT-B/16 fusion at full size (224 px), the 26 PA100K
  attributes, the paper's settings, batch 16.

A step is what the training loop does per update: forward with labels (weighted BCE +
GL loss), backward, gradient-norm clip 10, SGD step with the paper's two parameter
groups (``par_prompt.training.build_optimizer``). The sentences are tokenized with the
tiny BPE tokenizer of :mod:`par_prompt.tiny_backbones` (every id is below CLIP's 49,408-token
vocabulary; its sentence lengths, which set the text tower's cost, are close to CLIP's own).

Peak memory per step: on CUDA ``torch.cuda.max_memory_allocated`` after a reset; on
Linux CPUs the process's peak resident set (``VmHWM`` in ``/proc/self/status``), reset
before each step through ``/proc/self/clear_refs`` so each step reports its own peak
(falls back to ``resource.getrusage`` where that is not possible: the peak since start).

    python benchmarks/bench_train.py                    # both models
    python benchmarks/bench_train.py --models tiny --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "src" / "par_prompt").is_dir():
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from gpu_l14_bf16 import PA100K_ATTRIBUTES  # noqa: E402  (same directory)


# ------------------------------------------------------------------------------ memory


def _clear_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class PeakMemory:
    """Peak memory of one step, in MiB (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else (
            "peak RSS per step (VmHWM, reset per step)" if _clear_peak_rss() else "peak RSS since start (getrusage)")

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _clear_peak_rss()

    def stop(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return _peak_rss_mib()


# ------------------------------------------------------------------------------ models


def build(name: str):
    """(model, batch size) of a benchmark configuration, random weights."""
    from par_prompt import PromptPARConfig, PromptPARModel
    from par_prompt.modeling import sentence_token_ids
    from par_prompt.tiny_backbones import tiny_clip_tokenizer

    if name == "tiny":
        from par_prompt.data.synthetic import ATTRIBUTES, SENTENCES
        from par_prompt.demo import DemoSettings, demo_words
        from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config

        s = DemoSettings()
        tokenizer = tiny_clip_tokenizer(demo_words())
        clip = tiny_clip_config(image_size=s.image_size, patch_size=s.patch_size, vision_width=s.vision_width,
                                vision_layers=s.vision_layers, vision_heads=s.vision_heads, text_width=s.text_width,
                                text_layers=s.text_layers, text_heads=s.text_heads, projection_dim=s.projection_dim,
                                vocab_size=len(tokenizer))
        fusion = tiny_vit_config(image_size=s.image_size, patch_size=s.patch_size, fusion_width=s.fusion_width,
                                 fusion_layers=1, fusion_heads=s.fusion_heads)
        config = PromptPARConfig(attributes=list(ATTRIBUTES), sentences=list(SENTENCES), clip_config=clip,
                                 fusion_config=fusion, prompts_per_group=4, fusion_layers=0)
        batch = 32
    elif name == "vitb16":
        from par_prompt.backbone_sizes import (
            CLIP_VIT_B16_SIZES,
            VIT_B16_SIZES,
            clip_config_from_sizes,
            vit_config_from_sizes,
        )

        tokenizer = tiny_clip_tokenizer()
        config = PromptPARConfig(attributes=PA100K_ATTRIBUTES, dataset="pa100k",
                                 clip_config=clip_config_from_sizes(CLIP_VIT_B16_SIZES),
                                 fusion_config=vit_config_from_sizes(VIT_B16_SIZES))
        batch = 16
    else:
        raise ValueError(f"unknown model {name!r}: tiny or vitb16")
    torch.manual_seed(0)
    model = PromptPARModel(config)
    model.set_sentence_token_ids(sentence_token_ids(tokenizer, model.config.sentences))
    model.set_positive_ratios(torch.full((config.num_attributes,), 0.3))
    return model, batch


def run(name: str, steps: int, warmup: int, batch: int | None, device: torch.device) -> dict:
    from par_prompt.training import build_optimizer

    model, default_batch = build(name)
    batch = batch or default_batch
    model.to(device).train()
    size = model.config.get_clip_config().vision_config.image_size
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, size, size, generator=generator).to(device)
    labels = torch.randint(0, 2, (batch, model.config.num_attributes), generator=generator).to(device)
    optimizer = build_optimizer(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    memory = PeakMemory(device)

    def step() -> None:
        loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    times, peaks = [], []
    for _ in range(steps):
        memory.start()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        peaks.append(memory.stop())
    median = statistics.median(times)
    return {
        "model": name, "batch_size": batch, "image_size": size, "steps": steps, "warmup": warmup,
        "images_per_second": batch / median, "median_step_seconds": median, "step_seconds": times,
        "peak_memory_mib": max(peaks), "peak_memory_per_step_mib": peaks, "memory_measure": memory.kind,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "total_parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,vitb16", help="comma-separated: tiny, vitb16")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: tiny 10, vitb16 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=None, help="default: tiny 32, vitb16 16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda" else
               f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
    print(f"PromptPAR training throughput on {machine}; torch {torch.__version__}")
    results = []
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        steps = args.steps or (10 if name == "tiny" else 3)
        result = run(name, steps, args.warmup, args.batch_size, device)
        result["machine"] = machine
        results.append(result)
        print(f"  {name:7s} batch {result['batch_size']:3d} @ {result['image_size']} px: "
              f"{result['images_per_second']:8.2f} img/s ({result['median_step_seconds']:.3f} s/step, median of "
              f"{steps}), peak memory {result['peak_memory_mib']:.0f} MiB [{result['memory_measure']}]", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
