"""Throughput of the training data pipeline (decode, pad, resize, augment, normalise).

Builds the synthetic PAR data set, applies the training ``ImageTransform`` lazily
(``with_transform``) and iterates a ``torch.utils.data.DataLoader`` (2 workers, batch 16,
224 px, shuffled). After one warm-up pass it times a few full passes and prints the
median images per second. Target: >= 200 images/s, so that loading never starves a GPU
step of batch 16.

    python benchmarks/bench_data_pipeline.py [--images 2000] [--passes 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="training images to generate")
    parser.add_argument("--passes", type=int, default=3, help="timed passes (after one warm-up pass)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--target", type=float, default=200.0, help="images/s to reach")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    import torch

    from par_prompt.data import ImageTransform, load, make_synthetic

    args = parse_args(argv)
    start = time.perf_counter()
    data = load(make_synthetic(args.images, 16, 16, seed=0))
    print(f"generated {args.images} synthetic images (128x64) in {time.perf_counter() - start:.1f} s")

    train = data.with_image_transforms(ImageTransform(size=args.size))["train"]
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )

    def one_pass() -> tuple[float, int]:
        count, begin = 0, time.perf_counter()
        for batch in loader:
            count += batch["pixel_values"].shape[0]
        return time.perf_counter() - begin, count

    one_pass()  # warm-up: worker start-up, first decodes
    rates = []
    for i in range(args.passes):
        seconds, count = one_pass()
        rates.append(count / seconds)
        print(f"pass {i + 1}: {count} images in {seconds:.2f} s = {rates[-1]:.0f} images/s")
    median = statistics.median(rates)
    shape = tuple(next(iter(loader))["pixel_values"].shape)
    print(
        f"median: {median:.0f} images/s (batch {args.batch_size}, {args.workers} workers, {args.size} px, "
        f"batches of {shape}; target {args.target:.0f}: {'met' if median >= args.target else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
