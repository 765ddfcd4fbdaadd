"""ONNX Runtime versus PyTorch eager: equality and speed of an exported PromptPAR model.

A full-size PromptPAR model with random weights (CLIP ViT-B/16 by default, fusion layer
ViT-B/16, PA100K's 26 attributes) is exported with :func:`par_prompt.onnx.export_onnx`
and loaded with :class:`par_prompt.onnx.ONNXPromptPARPredictor`. Then, per batch size:

* equality: the max |probability| difference between ONNX Runtime and PyTorch on the
  same random pixels (issue target: <= 1e-4 in fp32);
* speed: ``predict_probabilities`` (the function ``predict`` runs on every batch) on the
  PyTorch model and on the predictor, alternating within each round; the median of the
  per-round ratios PyTorch time / ONNX Runtime time is reported (> 1: ONNX Runtime is
  faster; issue target: >= 1.3 at batch 1 on the CPU), with images per second.

Both run on the CPU with their default thread counts (one per core), or both with
``--threads N``. ``--opsets 20,23`` exports one graph per opset and times each against
PyTorch in the same rounds (opset 23 has ONNX's fused ``Attention`` operator; below it,
attention is MatMul + Softmax). The load average is printed before and after: on a
shared machine other jobs move the figures.

    python benchmarks/bench_onnx.py [--model b16|l14] [--batches 1,4] [--repeats 5] [--warmup 1]
        [--opsets 20[,23]] [--threads N] [--fp16] [--keep DIR] [--json results.json]

``--fp16`` also exports a float16 graph and prints its difference from float32 PyTorch
(and its speed; ONNX Runtime's CPU kernels are not made for float16). Writes JSON to
``--json``, or to ``$OUT/bench_onnx.json`` when ``OUT`` is set.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded from a file path (tests)
from bench_inference import write_results  # noqa: E402

SIZES = {"b16": "CLIP_VIT_B16_SIZES", "l14": "CLIP_VIT_L14_SIZES", "tiny": None}  # tiny: a quick smoke run
PA100K = ["Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
          "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride", "UpperLogo",
          "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts",
          "Skirt&Dress", "boots"]
TARGET_RATIO = 1.3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SIZES), default="b16",
                        help="CLIP backbone (default b16; tiny: a seconds-long smoke run)")
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds per batch size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--opsets", default=None, help="comma-separated ONNX opsets (default: par_prompt.onnx's)")
    parser.add_argument("--threads", type=int, default=None, help="threads of both PyTorch and ONNX Runtime")
    parser.add_argument("--fp16", action="store_true", help="also export and check a float16 graph")
    parser.add_argument("--keep", default=None, help="write the .onnx files here instead of a temporary folder")
    parser.add_argument("--json", default=None, help="write the results here (default: $OUT/bench_onnx.json)")
    return parser.parse_args(argv)


def _clip_config(name: str):
    from par_prompt import backbone_sizes
    from par_prompt.tiny_backbones import tiny_clip_config

    if SIZES[name] is None:
        return tiny_clip_config()
    return backbone_sizes.clip_config_from_sizes(getattr(backbone_sizes, SIZES[name]))


def build_processor(name: str):
    """The processor of :func:`build_model`'s model: the tiny tokenizer (its ids fit any
    CLIP vocabulary) and an image processor at the CLIP's image size."""
    from par_prompt import PromptPARImageProcessor, PromptPARProcessor
    from par_prompt.tiny_backbones import tiny_clip_tokenizer

    size = _clip_config(name).vision_config.image_size
    return PromptPARProcessor(image_processor=PromptPARImageProcessor(size=size),
                              tokenizer=tiny_clip_tokenizer())


def build_model(name: str):
    """A full-size random PromptPAR model in eval mode, its sentences tokenized by
    :func:`build_processor`'s tokenizer."""
    import torch

    from par_prompt import PromptPARConfig, PromptPARModel, backbone_sizes
    from par_prompt.tiny_backbones import tiny_vit_config

    clip_config = _clip_config(name)
    fusion_config = tiny_vit_config() if SIZES[name] is None else backbone_sizes.vit_config_from_sizes(
        backbone_sizes.VIT_B16_SIZES)
    config = PromptPARConfig(attributes=PA100K, dataset="pa100k", clip_config=clip_config,
                             fusion_config=fusion_config)
    torch.manual_seed(0)
    model = PromptPARModel(config)
    model.set_sentence_token_ids(build_processor(name).sentence_token_ids(model.config.sentences))
    with torch.no_grad():  # spread the heads, so that the probabilities are not all 0.5
        generator = torch.Generator().manual_seed(1)
        model.heads.weight.copy_(torch.randn(model.heads.weight.shape, generator=generator) * 0.05)
        model.heads.bias.copy_(torch.randn(model.heads.bias.shape, generator=generator))
    return model.eval()


def interleaved(calls: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each call per round; the calls alternate within every round."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(warmup + repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def max_difference(model, predictor, batch: int, seed: int) -> float:
    import torch

    from par_prompt.inference.predict import predict_probabilities

    size = predictor.image_processor.size
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    reference = predict_probabilities(model, pixels, batch_size=batch)
    _, probabilities = predictor.run(pixels)
    return float((torch.from_numpy(probabilities) - reference).abs().max())


def main(argv=None) -> int:
    import onnxruntime
    import torch

    from par_prompt.inference.predict import predict_probabilities
    from par_prompt.onnx import DEFAULT_OPSET, ONNXPromptPARPredictor, export_onnx

    args = parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    opsets = [int(o) for o in args.opsets.split(",")] if args.opsets else [DEFAULT_OPSET]
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "onnxruntime_threads": args.threads or "default",
               "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "opsets": opsets,
               "repeats": args.repeats, "load_average_before": os.getloadavg()}
    print(f"machine: {machine}")
    results: dict = {"machine": machine, "model": args.model, "batches": {}}
    start = time.perf_counter()
    model, processor = build_model(args.model), build_processor(args.model)
    print(f"built the {args.model} model in {time.perf_counter() - start:.0f} s")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_onnx."))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        predictors = {}
        for opset in opsets:
            start = time.perf_counter()
            exported = export_onnx(model, folder / f"promptpar_{args.model}_opset{opset}.onnx", processor=processor,
                                   opset=opset)
            results.setdefault("export", {})[str(opset)] = {
                "seconds": time.perf_counter() - start, "mib": exported.num_bytes / 2**20,
                "check_difference": exported.max_difference}
            print(f"opset {opset}: exported in {time.perf_counter() - start:.0f} s, {exported.num_bytes / 2**20:.0f} "
                  f"MiB; check batch difference {exported.max_difference:.2e}")
            predictors[f"onnxruntime_opset{opset}"] = ONNXPromptPARPredictor.from_file(exported.path,
                                                                                      threads=args.threads)
        for batch in batches:
            size = processor.image_processor.size
            pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(100 + batch))
            calls = {"pytorch": lambda: predict_probabilities(model, pixels, batch_size=batch)}
            for name, predictor in predictors.items():
                calls[name] = lambda predictor=predictor: predict_probabilities(predictor, pixels, batch_size=batch)
            times = interleaved(calls, args.repeats, args.warmup)
            row = {"max_difference": {}, "ratio": {}, "seconds": times,
                   "images_per_s": {name: batch / statistics.median(t) for name, t in times.items()}}
            line = f"batch {batch}: PyTorch {row['images_per_s']['pytorch']:.2f} img/s"
            for name, predictor in predictors.items():
                row["max_difference"][name] = max_difference(model, predictor, batch, seed=batch)
                row["ratio"][name] = statistics.median(t / o for t, o in zip(times["pytorch"], times[name]))
                verdict = ("meets" if row["ratio"][name] >= TARGET_RATIO else "MISSES") + f" {TARGET_RATIO}x"
                line += (f"; {name}: {row['images_per_s'][name]:.2f} img/s, {row['ratio'][name]:.2f}x as fast"
                         + (f" ({verdict})" if batch == 1 else "")
                         + f", max |ORT - PyTorch| = {row['max_difference'][name]:.2e}")
            results["batches"][str(batch)] = row
            print(line)
        del predictors
        if args.fp16:
            start = time.perf_counter()
            half = export_onnx(model, folder / f"promptpar_{args.model}_fp16.onnx", processor=processor,
                               opset=opsets[0], fp16=True)
            predictor = ONNXPromptPARPredictor.from_file(half.path)
            row = {"seconds": time.perf_counter() - start, "mib": half.num_bytes / 2**20,
                   "max_difference": {str(b): max_difference(model, predictor, b, seed=b) for b in batches}}
            results["fp16"] = row
            print(f"fp16: {row['mib']:.0f} MiB; max |ORT fp16 - PyTorch fp32| = "
                  + ", ".join(f"{d:.2e} (batch {b})" for b, d in row["max_difference"].items()))
    finally:
        if not args.keep:
            for file in folder.glob("*.onnx"):
                file.unlink()
            folder.rmdir()
    machine["load_average_after"] = os.getloadavg()
    print(f"load average before {machine['load_average_before']}, after {machine['load_average_after']}")
    write_results(results, args.json, name="bench_onnx.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
