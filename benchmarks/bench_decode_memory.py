"""Peak memory and time of decoding large images into model inputs (issue #11 item 17).

Writes test images once (six 9000×9000 RGB PNGs of about 260 KB, one 9000×9000 16-bit
grey PNG of about 190 KB, one 9000×9000 JPEG tagged with an EXIF rotation) into
``--workdir``, then runs each case in a fresh subprocess and reports the growth of the
peak resident set size over the resident size just before the case, and the
wall time. (Linux only: the peak is the kernel's ``VmHWM``, reset before the case by
writing 5 to ``/proc/self/clear_refs``.) Cases:

- ``transform-6png``: ``ImageTransform`` (the training/evaluation batch transform) on a
  batch of the six PNGs (given as ``datasets`` ``{"path": ...}`` dicts);
- ``processor-6png``: ``PromptPARImageProcessor`` on the same six paths;
- ``transform-1png``: ``ImageTransform`` on one of them (the batch-size-1 reference:
  the peak must not grow with the batch);
- ``png16``: ``decode_image`` + ``fit_to_square`` of the 16-bit PNG;
- ``jpeg-exif``: the same for the rotated JPEG.

Compare two trees by pointing ``PYTHONPATH`` at each ``src``::

    PYTHONPATH=/path/to/old/src python benchmarks/bench_decode_memory.py
    PYTHONPATH=src python benchmarks/bench_decode_memory.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SIDE = 9000

CASE_CODE = r"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from par_prompt.data.transforms import ImageTransform, decode_image, fit_to_square
from par_prompt.image_processing import PromptPARImageProcessor
case, work = sys.argv[1], Path(sys.argv[2])
pngs = [str(work / f"rgb{i}.png") for i in range(6)]
def resident_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current size
base = resident_mb("VmRSS")
start = time.perf_counter()
if case == "transform-6png":
    out = ImageTransform(224)({"image": [{"path": p, "bytes": None} for p in pngs]})["pixel_values"]
elif case == "transform-1png":
    out = ImageTransform(224)({"image": [{"path": pngs[0], "bytes": None}]})["pixel_values"]
elif case == "processor-6png":
    out = PromptPARImageProcessor(size=224)(pngs)["pixel_values"]
elif case == "png16":
    out = fit_to_square(decode_image(str(work / "grey16.png"), size_hint=224), 224)
elif case == "jpeg-exif":
    out = fit_to_square(decode_image(str(work / "rotated.jpg"), size_hint=224), 224)
seconds = time.perf_counter() - start
peak = resident_mb("VmHWM")
print(json.dumps({"case": case, "shape": list(out.shape), "peak_growth_mb": peak - base,
                  "seconds": seconds}))
"""

CASES = ("transform-1png", "transform-6png", "processor-6png", "png16", "jpeg-exif")


def write_images(work: Path) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    work.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        path = work / f"rgb{i}.png"
        if not path.exists():
            image = Image.new("RGB", (SIDE, SIDE), (30, 60 + i, 90))
            draw = ImageDraw.Draw(image)
            for x in range(0, SIDE, 500):
                draw.rectangle((x, x, x + 300, x + 4000), fill=(200, x % 255, 40))
            image.save(path)
    path = work / "grey16.png"
    if not path.exists():
        values = np.zeros((SIDE, SIDE), dtype=np.uint16)
        values[1000:8000, 2000:4000] = 40000
        values[::7, :] = 1234
        Image.fromarray(values).save(path)
    path = work / "rotated.jpg"
    if not path.exists():
        image = Image.new("RGB", (SIDE, SIDE // 2), (10, 200, 30))
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
        image.save(path, quality=90, exif=exif)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/par_prompt_bench_decode", type=Path)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    args = parser.parse_args()
    write_images(args.workdir)
    for case in args.cases:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", CASE_CODE, case, str(args.workdir)], capture_output=True, text=True
        )
        if result.returncode:
            print(f"{case}: failed after {time.perf_counter() - start:.1f} s: {result.stderr.strip()[-500:]}")
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{case:16s} peak +{row['peak_growth_mb']:8.1f} MB  {row['seconds']:6.2f} s  out {row['shape']}")


if __name__ == "__main__":
    main()
