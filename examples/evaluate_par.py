"""Evaluate a saved PromptPAR model on a PAR data set (the paper's metrics).

Same options and output as ``par-prompt evaluate`` (both call
:func:`par_prompt.evaluation.cli.run`)::

    python examples/evaluate_par.py --model runs/pa100k/best --dataset data/pa100k \\
        --split test --output results/pa100k-test.json

    # per-attribute thresholds calibrated on the validation split, saved with the model
    python examples/evaluate_par.py --model runs/pa100k/best --dataset data/pa100k \\
        --calibrate --save-calibrated runs/pa100k/best-calibrated

Prints the paper row (mA, Acc, Prec, Rec, F1 in percent, with the threshold used) and a
per-attribute table; ``--output`` writes both as JSON.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from par_prompt.evaluation.cli import add_arguments, run


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
