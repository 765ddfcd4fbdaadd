#!/usr/bin/env python
"""Training step of this checkout against an older one (by default commit 5cd4ac9): time and peak memory.

Each variant runs in its own worker process, with ``PYTHONPATH`` set to the ``src`` folder
of its source tree, and builds the same model from the same seed:

- ``base``: the older tree (``--base-src``; make it with
  ``git worktree add --detach /tmp/base5cd 5cd4ac9``);
- ``new``: this checkout;
- ``new_ckpt``: this checkout with ``model.gradient_checkpointing_enable()``.

The model is the issue's setting: CLIP ViT-B/16 + ViT-B/16 fusion at full size (random
weights: speed and memory do not depend on the values), fp32 on the CPU, the 51 RAPv1
attributes with their sentences (tokenized, for every variant, by the tiny BPE tokenizer of
the first variant's tree, saved once, so that all compute the same losses; its sentence
lengths are close to CLIP's own), the paper's
prompt settings, batch 16. A step is what the training loop does per update: forward
with labels (weighted BCE + GL), backward, gradient-norm clip 10, SGD with the paper's
two parameter groups.

The workers stay alive and take turns: in every round each variant runs one step while
the others wait, in an order that rotates from round to round, so that all of them see
the same load on a shared machine. Per step a worker reports its wall time, its CPU time
(``time.process_time``, all threads; on a machine shared with other jobs the wall time
follows their load, the CPU time much less, so run with ``--threads 1`` there: idle
OpenMP threads spinning under contention would count as CPU time) and its peak resident
set (``VmHWM``, reset before the step through ``/proc/self/clear_refs``; weights and
libraries included). The summary gives medians, and the median over rounds of the
per-round ratios to ``base``, with the load average before and after the run.

    python benchmarks/bench_against_base.py --base-src /tmp/base5cd/src [--rounds 3] [--warmup 1]
        [--variants base,new,new_ckpt] [--batch-size 16] [--json out.json]
    python benchmarks/bench_against_base.py --base-src /tmp/base5cd/src --smoke   # seconds, checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
NEW_SRC = HERE.parents[1] / "src"
RESULT = "RESULT "
MEASURES = ("seconds", "cpu_seconds", "peak_rss_mib")


# ------------------------------------------------------------------------------ worker


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def worker(args: argparse.Namespace) -> None:
    """Build the model, then run one training step per line read from stdin."""
    import torch

    from transformers import AutoTokenizer

    from par_prompt import PromptPARConfig, PromptPARModel
    from par_prompt.sentences import DATASET_ATTRIBUTES
    from par_prompt.training import build_optimizer

    try:  # this checkout
        from par_prompt.backbone_sizes import CLIP_VIT_B16_SIZES, VIT_B16_SIZES, clip_config_from_sizes
        from par_prompt.backbone_sizes import vit_config_from_sizes
        from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config
    except ImportError:  # older trees kept them in par_prompt.testing
        from par_prompt.testing import CLIP_VIT_B16_SIZES, VIT_B16_SIZES, clip_config_from_sizes
        from par_prompt.testing import tiny_clip_config, tiny_vit_config, vit_config_from_sizes

    if args.threads:
        torch.set_num_threads(args.threads)
    attributes = list(DATASET_ATTRIBUTES["rapv1"])
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)  # the same files for every variant
    if args.smoke:
        clip_config = tiny_clip_config(image_size=224, patch_size=32, vocab_size=len(tokenizer))
        fusion_config = tiny_vit_config()
    else:
        clip_config, fusion_config = clip_config_from_sizes(CLIP_VIT_B16_SIZES), vit_config_from_sizes(VIT_B16_SIZES)
    config = PromptPARConfig(attributes=attributes, dataset="rapv1", clip_config=clip_config,
                             fusion_config=fusion_config, prompts_per_group=2 if args.smoke else 10)
    torch.manual_seed(0)
    model = PromptPARModel(config)
    if hasattr(model, "attach_tokenizer"):  # the base tree: the model tokenized its sentences itself
        model.attach_tokenizer(tokenizer)
    else:
        from par_prompt.modeling import sentence_token_ids

        model.set_sentence_token_ids(sentence_token_ids(tokenizer, model.config.sentences))
    model.set_positive_ratios(torch.full((config.num_attributes,), 0.3))
    if args.checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.batch_size, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 2, (args.batch_size, config.num_attributes), generator=generator)
    optimizer = build_optimizer(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    import par_prompt

    print(RESULT + json.dumps({"ready": True, "package": par_prompt.__file__, "threads": torch.get_num_threads(),
                               "rss_mib": _peak_rss_mib()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        _reset_peak_rss()
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        print(RESULT + json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": _peak_rss_mib(),
                                   "loss": loss.item()}), flush=True)


def write_tokenizer(directory: Path) -> None:
    """Save the tiny CLIP tokenizer of the tree on ``PYTHONPATH`` to ``directory``."""
    try:
        from par_prompt.tiny_backbones import tiny_clip_tokenizer
    except ImportError:  # older trees
        from par_prompt.testing import tiny_clip_tokenizer

    tiny_clip_tokenizer().save_pretrained(directory)


# ------------------------------------------------------------------------ orchestrator


class Worker:
    """One variant's worker process."""

    def __init__(self, name: str, src: Path, checkpointing: bool, args: argparse.Namespace) -> None:
        self.name = name
        command = [sys.executable, str(HERE), "--worker", "--batch-size", str(args.batch_size),
                   "--tokenizer", str(args.tokenizer)]
        if checkpointing:
            command.append("--checkpointing")
        if args.smoke:
            command.append("--smoke")
        if args.threads:
            command += ["--threads", str(args.threads)]
        env = dict(os.environ, PYTHONPATH=str(src))
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()
        expected = (src / "par_prompt" / "__init__.py").resolve()
        if Path(self.info["package"]).resolve() != expected:
            raise RuntimeError(f"{name}: imported {self.info['package']}, expected {expected}")

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise RuntimeError(f"worker {self.name} ended (exit code {self.process.wait()})")

    def step(self) -> dict:
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-src", type=Path, default=None, help="src folder of the older tree (for 'base')")
    parser.add_argument("--variants", default="base,new,new_ckpt", help="comma-separated: base, new, new_ckpt")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--smoke", action="store_true", help="tiny backbones: checks the script in seconds")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--write-tokenizer", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    if args.write_tokenizer:
        write_tokenizer(args.write_tokenizer)
        return {}

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    sources = {"base": args.base_src, "new": NEW_SRC, "new_ckpt": NEW_SRC}
    unknown = [n for n in names if n not in sources]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(sources)}")
    if "base" in names and (args.base_src is None or not (args.base_src / "par_prompt").is_dir()):
        parser.error("--base-src must be the src folder of the older tree, e.g. /tmp/base5cd/src")
    # Every variant tokenizes the sentences with the same tokenizer files (the tiny tokenizer of
    # the first variant's tree), so that the runs compute the same losses.
    scratch = tempfile.TemporaryDirectory(prefix="bench-tokenizer-")
    args.tokenizer = Path(scratch.name)
    subprocess.run([sys.executable, str(HERE), "--write-tokenizer", str(args.tokenizer)], check=True,
                   env=dict(os.environ, PYTHONPATH=str(sources[names[0]])))
    load_before = os.getloadavg()
    workers = []
    try:
        for name in names:
            start = time.perf_counter()
            workers.append(Worker(name, sources[name], name.endswith("_ckpt"), args))
            print(f"{name}: built in {time.perf_counter() - start:.0f} s from {workers[-1].info['package']} "
                  f"({workers[-1].info['threads']} threads, {workers[-1].info['rss_mib']:.0f} MiB)", flush=True)
        steps: dict[str, list[dict]] = {name: [] for name in names}
        for round_index in range(args.warmup + args.rounds):
            shift = round_index % len(workers)
            load = os.getloadavg()[0]
            for w in workers[shift:] + workers[:shift]:
                result = w.step()
                result["load"] = load
                if round_index >= args.warmup:
                    steps[w.name].append(result)
                print(f"round {round_index + 1}{' (warm-up)' if round_index < args.warmup else ''} {w.name}: "
                      f"{result['seconds']:.2f} s ({result['cpu_seconds']:.2f} s CPU), peak RSS "
                      f"{result['peak_rss_mib']:.0f} MiB, loss "
                      f"{result['loss']:.4f}, load {load:.2f}", flush=True)
    finally:
        for w in workers:
            w.close()
        scratch.cleanup()
    load_after = os.getloadavg()
    summary = {"load_average_before": load_before, "load_average_after": load_after, "variants": {}}
    for name in names:
        entry = {"steps": steps[name]}
        for measure in MEASURES:
            entry[f"median_{measure}"] = statistics.median(s[measure] for s in steps[name])
            if "base" in steps and name != "base":
                entry[f"{measure}_ratio_to_base"] = statistics.median(
                    a[measure] / b[measure] for a, b in zip(steps[name], steps["base"]))
        entry["max_peak_rss_mib"] = max(s["peak_rss_mib"] for s in steps[name])
        summary["variants"][name] = entry
    print(f"\nload average (1, 5, 15 min): before {load_before}, after {load_after}")
    print("medians of the timed rounds; ratios: median over rounds of variant / base in the same round")
    for name, entry in summary["variants"].items():
        line = (f"{name:9s} {entry['median_seconds']:7.2f} s/step, {entry['median_cpu_seconds']:7.2f} s CPU/step, "
                f"peak RSS {entry['median_peak_rss_mib']:6.0f} MiB (max {entry['max_peak_rss_mib']:.0f})")
        if "seconds_ratio_to_base" in entry:
            cpu_ratio = entry["cpu_seconds_ratio_to_base"]
            line += (f"; vs base: time x{entry['seconds_ratio_to_base']:.3f}, CPU time x{cpu_ratio:.3f} "
                     f"(speed-up {1 / cpu_ratio:.2f}x), peak RSS x{entry['peak_rss_mib_ratio_to_base']:.3f}")
        print(line)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
