"""Peak memory of prediction on a batch of large images: resize each image right after
decoding (what ``predict`` does) versus decode the whole batch, then resize (what it did
before, issue #11 item 17).

Each measurement runs in a fresh process (a tiny random model, so the images dominate):
it records the resident memory before predicting and the peak (``ru_maxrss``) after, and
prints the peak increase per mode and their ratio; the modes alternate, round by round.

    python benchmarks/bench_predict_memory.py [--images 6] [--side 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("decode-batch-then-resize", "resize-each-image")


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(mode: str, folder: str, batch: int) -> dict:
    """In this process: predict every image of ``folder`` in one batch with ``mode``."""
    import resource

    import torch

    from par_prompt import PromptPARModel, PromptPARProcessor
    from par_prompt.inference.predict import iter_predictions, load_image, predict_probabilities
    from par_prompt.tiny_backbones import write_tiny_backbones

    backbones = write_tiny_backbones(Path(folder) / "backbones", image_size=32, patch_size=4)
    model = PromptPARModel.from_backbones(backbones.clip, ["a", "b"], fusion_name_or_path=backbones.vit,
                                          prompts_per_group=2).eval()
    processor = PromptPARProcessor.from_pretrained(backbones.clip).image_processor
    paths = sorted(str(p) for p in Path(folder).glob("*.png"))
    before = _rss_mb()
    if mode == MODES[0]:  # the former _predict_chunk: every image of the batch decoded first
        images = [load_image(p, i, size_hint=processor.size) for i, p in enumerate(paths)]
        pixels = processor(images, return_tensors="pt")["pixel_values"]
        probabilities = predict_probabilities(model, pixels, batch)
    else:
        probabilities = torch.tensor([list(r.probabilities.values())
                                      for r in iter_predictions(model, paths, batch_size=batch, processor=processor)])
    assert probabilities.shape == (len(paths), 2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"mode": mode, "before_mb": before, "peak_mb": peak, "increase_mb": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--side", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.images)))
        return

    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        ramp = np.linspace(0, 255, args.side, dtype=np.float32)
        for i in range(args.images):  # smooth colour ramps: small files, full-size pixels once decoded
            rgb = np.stack([np.add.outer(ramp, ramp * (k + i) % 256) % 256 for k in range(3)], -1).astype(np.uint8)
            Image.fromarray(rgb).save(Path(folder) / f"{i}.png")
        size_mb = sum(p.stat().st_size for p in Path(folder).glob("*.png")) / 2**20
        print(f"{args.images} PNG images of {args.side}x{args.side} ({size_mb:.1f} MB on disk, "
              f"{args.images * args.side**2 * 3 / 2**20:.0f} MB decoded), one batch of {args.images}")
        increases: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                done = subprocess.run([sys.executable, __file__, "--images", str(args.images), "--measure", mode,
                                       folder], capture_output=True, text=True, check=True)
                increases[mode].append(json.loads(done.stdout.strip().splitlines()[-1])["increase_mb"])
        for mode in MODES:
            print(f"{mode:>26}: peak increase {statistics.median(increases[mode]):7.1f} MB "
                  f"(rounds: {', '.join(f'{v:.0f}' for v in increases[mode])})")
        ratio = statistics.median(increases[MODES[0]]) / max(1e-9, statistics.median(increases[MODES[1]]))
        print(f"ratio (batch-then-resize / resize-each): {ratio:.2f}")


if __name__ == "__main__":
    main()
