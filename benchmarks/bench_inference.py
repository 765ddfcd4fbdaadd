"""Inference speed: PromptPAR ``predict`` versus a bare ``CLIPVisionModel`` forward.

For each backbone (CLIP ViT-B/16 and ViT-L/14, full size, random weights; fusion layer
ViT-B/16) and batch size, three calls are timed in interleaved rounds:

* ``bare``: ``CLIPVisionModel(pixel_values)`` of the same vision config, no prompts;
* ``predict_tensors``: :func:`par_prompt.inference.predict.predict_probabilities` on the
  same preprocessed tensors (vision tower with prompts, fusion layer, heads; the text
  features are cached, as in ``predict``);
* ``predict_images``: ``PromptPARPredictor(model, processor).predict(images)`` on PIL images (256×128), i.e. with
  decoding, padding, resizing and normalisation on the CPU.

The ratio of each round's ``predict_tensors`` time to its ``bare`` time is taken, and
the median over rounds reported, for wall time and for CPU time (``time.process_time``;
on a CPU shared with other jobs, their load moves the wall time, much less the CPU time).
Targets (issue #12): 1.25× for B/16, 1.15× for L/14, below
the naive floor of running every token of the prompted sequence through every layer plus
a full fusion layer (1.41×, 1.25×): the deep prompts give keys and values only, and the
fusion layer computes outputs for the attribute tokens only. Then images per
second with sdpa versus eager attention (both models switched), and optionally with
``torch.compile`` (both models compiled the same way).

    python benchmarks/bench_inference.py [--models b16,l14] [--batches 1,4] [--repeats 7]
        [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--compile] [--compile-mode default]
        [--json results.json]

Needs only torch, transformers, peft, safetensors, numpy and pillow. Writes JSON to
``--json``, or to ``$OUT/bench_inference.json`` when ``OUT`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable

MODELS = {
    # name: (CLIP sizes constant, target ratio, naive floor ratio)
    "b16": ("CLIP_VIT_B16_SIZES", 1.25, 1.41),
    "l14": ("CLIP_VIT_L14_SIZES", 1.15, 1.25),
}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PA100K = ["Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
          "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride", "UpperLogo",
          "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts",
          "Skirt&Dress", "boots"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="b16,l14", help="comma-separated: b16, l14")
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=7, help="timed interleaved rounds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--no-images", action="store_true", help="skip the predict-on-PIL-images timing")
    parser.add_argument("--no-eager", action="store_true", help="skip the sdpa versus eager comparison")
    parser.add_argument("--compile", action="store_true", help="also time both models under torch.compile")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode (e.g. reduce-overhead on cuda)")
    parser.add_argument("--compile-batches", default=None, help="batch sizes for compile (default: --batches)")
    parser.add_argument("--json", default=None, help="write the results here (default: $OUT/bench_inference.json)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); on a CPU shared with other jobs use 1 and read the "
                             "CPU-time ratios, which their load moves much less than the wall-time ones")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- models


def build_models(name: str, device, dtype):
    """A full-size random PromptPAR model (PA100K's 26 attributes) and the bare CLIP
    vision tower of the same config, both in eval mode on ``device``, and the model's
    processor (the tiny tokenizer, an image processor at the CLIP's size)."""
    import torch
    from transformers import CLIPVisionModel

    from par_prompt import (
        PromptPARConfig,
        PromptPARImageProcessor,
        PromptPARModel,
        PromptPARProcessor,
        backbone_sizes,
    )
    from par_prompt.tiny_backbones import tiny_clip_tokenizer

    clip_config = backbone_sizes.clip_config_from_sizes(getattr(backbone_sizes, MODELS[name][0]))
    config = PromptPARConfig(attributes=PA100K, dataset="pa100k", clip_config=clip_config,
                             fusion_config=backbone_sizes.vit_config_from_sizes(backbone_sizes.VIT_B16_SIZES))
    torch.manual_seed(0)
    with torch.device(device):
        model = PromptPARModel(config)
        bare = CLIPVisionModel(clip_config.vision_config)
    processor = PromptPARProcessor(image_processor=PromptPARImageProcessor(size=clip_config.vision_config.image_size),
                                   tokenizer=tiny_clip_tokenizer())  # its ids fit any CLIP vocabulary
    model.set_sentence_token_ids(processor.sentence_token_ids(model.config.sentences))
    return model.to(dtype).eval(), bare.to(dtype).eval(), processor


def set_attention(model, bare, implementation: str) -> None:
    """Switch every attention of both models (CLIP towers, fusion layers, bare tower)."""
    model.clip_model.set_attn_implementation(implementation)
    for module in model.fusion.modules():  # the fusion layers read their ViTConfig at each call
        config = getattr(module, "config", None)
        if config is not None:
            config._attn_implementation = implementation
    bare.set_attn_implementation(implementation)


# ---------------------------------------------------------------------------- timing


def synchronizer(device) -> Callable[[], None]:
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def interleaved(calls: dict[str, Callable[[], object]], repeats: int, warmup: int, sync):
    """Wall and CPU seconds (``time.process_time``, this process) of each call per round;
    calls alternate within every round."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu_times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(warmup + repeats):
        for name, call in calls.items():
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            sync()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - start_cpu)
    return times, cpu_times


def summarise(times: dict[str, list[float]], cpu_times: dict[str, list[float]], batch: int) -> dict:
    """Median seconds, images/s, and median per-round ratios to ``bare`` (wall and CPU time)."""
    out = {"median_s": {n: statistics.median(t) for n, t in times.items()}}
    out["images_per_s"] = {n: batch / s for n, s in out["median_s"].items()}
    out["ratio"] = {
        n: statistics.median(a / b for a, b in zip(t, times["bare"])) for n, t in times.items() if n != "bare"
    }
    out["cpu_ratio"] = {
        n: statistics.median(a / b for a, b in zip(t, cpu_times["bare"])) for n, t in cpu_times.items() if n != "bare"
    }
    return out


def measure(model, bare, batch: int, args, device, dtype, sync, with_images: bool, processor=None) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from par_prompt import PromptPARPredictor
    from par_prompt.inference.predict import predict_probabilities

    size = model.config.get_clip_config().vision_config.image_size
    generator = torch.Generator().manual_seed(batch)
    pixels = torch.randn(batch, 3, size, size, generator=generator).to(device=device, dtype=dtype)
    rng = np.random.default_rng(batch)
    images = [Image.fromarray(rng.integers(0, 256, (256, 128, 3), dtype=np.uint8)) for _ in range(batch)]

    def run_bare():
        with torch.inference_mode():
            return bare(pixel_values=pixels).last_hidden_state

    calls = {"bare": run_bare, "predict_tensors": lambda: predict_probabilities(model, pixels, batch_size=batch)}
    if with_images:
        predictor = PromptPARPredictor(model, processor)
        calls["predict_images"] = lambda: predictor.predict(images, batch_size=batch)
        calls["preprocess_only"] = lambda: predictor.image_processor(images, return_tensors="pt")
    return summarise(*interleaved(calls, args.repeats, args.warmup, sync), batch)


def compile_models(model, bare, mode: str):
    """Both models under torch.compile; returns a restore function. The PromptPAR model
    is compiled whole (graph breaks at the cached text features are fine)."""
    import torch

    original_forward, original_bare = model.forward, bare.forward
    model.forward = torch.compile(model.forward, mode=mode)
    bare.forward = torch.compile(bare.forward, mode=mode)

    def restore():
        model.forward, bare.forward = original_forward, original_bare

    return restore


# ------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, DTYPES[args.dtype])
    sync = synchronizer(device)
    batches = [int(b) for b in args.batches.split(",")]
    compile_batches = [int(b) for b in (args.compile_batches or args.batches).split(",")]
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "dtype": args.dtype, "repeats": args.repeats,
    }
    print(f"machine: {machine}")
    results = {"machine": machine, "models": {}}
    for name in args.models.split(","):
        target, floor = MODELS[name][1], MODELS[name][2]
        start = time.perf_counter()
        model, bare, processor = build_models(name, device, dtype)
        with torch.no_grad():
            model.text_features()  # computed once and cached, as predict does on its first batch
        entry = {"target_ratio": target, "naive_floor_ratio": floor,
                 "sequence": {"bare": bare.config.image_size ** 2 // bare.config.patch_size ** 2 + 1,
                              "prompted": model.visual_length},
                 "batches": {}}
        print(f"\n== {name}: built in {time.perf_counter() - start:.0f} s; tokens {entry['sequence']['bare']} -> "
              f"{entry['sequence']['prompted']}; target <= {target}x (naive floor {floor}x)")
        for batch in batches:
            row = {"sdpa": measure(model, bare, batch, args, device, dtype, sync, not args.no_images, processor)}
            ratio = row["sdpa"]["ratio"]["predict_tensors"]
            cpu_ratio = row["sdpa"]["cpu_ratio"]["predict_tensors"]
            # On a CPU the CPU-time ratio decides (other jobs' load moves the wall time); on a GPU the wall time.
            verdict = "meets" if (cpu_ratio if device.type == "cpu" else ratio) <= target else "MISSES"
            print(f"batch {batch}: bare {row['sdpa']['images_per_s']['bare']:.2f} img/s, predict(tensors) "
                  f"{row['sdpa']['images_per_s']['predict_tensors']:.2f} img/s -> ratio {ratio:.3f}, CPU-time ratio "
                  f"{cpu_ratio:.3f} ({verdict} {target}x)"
                  + (f"; predict(images) ratio {row['sdpa']['ratio']['predict_images']:.3f}, "
                     f"preprocessing alone {row['sdpa']['median_s']['preprocess_only'] * 1e3:.1f} ms"
                     if "predict_images" in row["sdpa"]["ratio"] else ""))
            if not args.no_eager:
                set_attention(model, bare, "eager")
                try:
                    row["eager"] = measure(model, bare, batch, args, device, dtype, sync, False)
                finally:
                    set_attention(model, bare, "sdpa")
                print(f"         eager: bare {row['eager']['images_per_s']['bare']:.2f} img/s, predict "
                      f"{row['eager']['images_per_s']['predict_tensors']:.2f} img/s, ratio "
                      f"{row['eager']['ratio']['predict_tensors']:.3f}")
            entry["batches"][str(batch)] = row
        if args.compile:
            restore = compile_models(model, bare, args.compile_mode)
            try:
                for batch in compile_batches:
                    begin = time.perf_counter()
                    measure(model, bare, batch, argparse.Namespace(repeats=1, warmup=1), device, dtype, sync, False)
                    compile_s = time.perf_counter() - begin
                    row = measure(model, bare, batch, args, device, dtype, sync, False)
                    row["compile_and_first_calls_s"] = compile_s
                    entry["batches"].setdefault(str(batch), {})[f"compiled_{args.compile_mode}"] = row
                    print(f"batch {batch} compiled ({args.compile_mode}, {compile_s:.0f} s to compile): bare "
                          f"{row['images_per_s']['bare']:.2f} img/s, predict {row['images_per_s']['predict_tensors']:.2f}"
                          f" img/s, ratio {row['ratio']['predict_tensors']:.3f}")
            finally:
                restore()
        results["models"][name] = entry
        write_results(results, args.json)  # after every model, so a cut-off run keeps what it measured
        del model, bare
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


def write_results(results: dict, path=None, name: str = "bench_inference.json") -> None:
    """Write ``results`` to ``path``, else to ``$OUT/<name>`` when OUT is set (the GPU machine's
    output folder). bench_onnx.py writes its results with this too."""
    path = path or (os.path.join(os.environ["OUT"], name) if os.environ.get("OUT") else None)
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {path}")

if __name__ == "__main__":
    raise SystemExit(main())
