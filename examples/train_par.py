#!/usr/bin/env python
"""Train PromptPAR with Accelerate, from one CPU to many GPUs.

    accelerate launch examples/train_par.py                       # the embedded demo
    accelerate launch examples/train_par.py --clip openai/clip-vit-large-patch14 \\
        --dataset pa100k --data-dir data/pa100k --output-dir runs/pa100k
    accelerate launch --num_processes 8 examples/train_par.py ...  # 8 GPUs, same global batch
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 examples/train_par.py ...  # 2 CPU processes (gloo)
    python examples/train_par.py args.json                        # the arguments from a JSON file

Without --clip the demo runs: synthetic data and tiny backbones (built once and cached),
a few minutes on a laptop CPU, ending with a metrics table and the adapter in
outputs/demo/best. `--help` lists every option; the logic lives in par_prompt.training.
"""

import sys

from transformers import HfArgumentParser

from par_prompt.training import DataArguments, ModelArguments, TrainingArguments, train


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments),
                              description=__doc__.split("\n\n")[0])
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(argv[0])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    train(model_args, data_args, training_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
