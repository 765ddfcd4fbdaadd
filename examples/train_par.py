#!/usr/bin/env python
"""Train PromptPAR with Accelerate, from one CPU to many GPUs.

The same command as ``par-prompt train`` (both run par_prompt.training.cli); this script
is the entry point for ``accelerate launch`` and ``torchrun``::

    accelerate launch examples/train_par.py                       # the embedded demo
    accelerate launch examples/train_par.py --recipe pa100k --data-dir data/pa100k --output-dir runs/pa100k
    accelerate launch examples/train_par.py --clip openai/clip-vit-large-patch14 \\
        --dataset pa100k --data-dir data/pa100k --output-dir runs/pa100k
    accelerate launch --num_processes 8 examples/train_par.py ...  # 8 GPUs, same global batch
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 examples/train_par.py ...  # 2 CPU processes (gloo)
    python examples/train_par.py my_run.yaml                      # = --config my_run.yaml

Without --clip (or a --recipe) the demo runs: synthetic data and tiny backbones (built
once and cached), a few minutes on a laptop CPU, ending with a metrics table and the
adapter in outputs/demo/best. `--help` lists every option.
"""

import sys

from par_prompt.training.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="train_par.py"))
