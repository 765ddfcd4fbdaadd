"""The ``par-prompt train`` command; ``examples/train_par.py`` (the ``accelerate launch``
entry point) runs the same code through :func:`main`.

    par-prompt train                                     # the embedded demo
    par-prompt train --recipe pa100k --data-dir data/pa100k
    par-prompt train --config my_run.yaml --epochs 20    # flags override the file
    accelerate launch --num_processes 8 examples/train_par.py --recipe pa100k --data-dir data/pa100k

Options are the fields of :class:`~par_prompt.training.ModelArguments`,
:class:`~par_prompt.training.DataArguments` and
:class:`~par_prompt.training.TrainingArguments` (with dashes or underscores), plus
``--recipe`` and ``--config`` (:mod:`par_prompt.training.recipe`). Only the flags given
on the command line override the recipe and the file: the parser has no defaults of its
own (the dataclasses hold them), and an option given twice is an error (argparse would
keep the last silently). A run without ``--clip`` is the demo
(:func:`par_prompt.demo.train_demo`); this command line is the layer above both.

Exit codes: 0 done; 2 bad input (one line on stderr naming the problem and the fix:
options, files, data, output directory, checkpoint, Hub access); 1 training failed (the
loss became NaN or infinite: one line naming the step and the last good checkpoint).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

__all__ = ["build_parser", "main", "options_parser", "register", "run"]

COMMAND = "train"
DESCRIPTION = ("Train PromptPAR with Accelerate, from one CPU to many GPUs. Without --clip (or a --recipe) the "
               "embedded demo runs: synthetic data and tiny backbones, a few minutes on a CPU.")
EPILOG = """settings are resolved in layers: the defaults (the paper's recipe with --clip, the demo without),
then --recipe (the paper's setting for one data set), then --config FILE (.yaml or .json; an earlier run's
OUTPUT/training_args.json works too), then the flags given here. The resolved settings are printed at the
start and saved in OUTPUT/training_args.json.

examples:
  par-prompt train
  par-prompt train --recipe pa100k --data-dir data/pa100k --output-dir runs/pa100k
  par-prompt train --recipe wider --data-dir data/wider --epochs 30 --report-to tensorboard,wandb
  par-prompt train --output-dir runs/pa100k --recipe pa100k --data-dir data/pa100k --resume latest
  accelerate launch --num_processes 8 examples/train_par.py --recipe pa100k --data-dir data/pa100k
"""
USAGE = "%(prog)s [--recipe NAME] [--config FILE] [OPTIONS]  (--help lists the options)"
#: Namespace entries that are not training options.
NOT_OPTIONS = ("command", "func", "recipe", "config")


def _version() -> str:
    from ..cli import _version as package_version

    return package_version()


def options_parser() -> argparse.ArgumentParser:
    """A parent parser holding every training option (built by ``HfArgumentParser`` from
    the dataclasses), with no defaults: an option not given is absent from the namespace."""
    from transformers import HfArgumentParser

    from ..demo import DEMO_DEFAULTS
    from .arguments import PAPER_DEFAULTS, DataArguments, ModelArguments, TrainingArguments
    from .recipe import recipe_names

    options = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), add_help=False)
    run_defaults = {name: (PAPER_DEFAULTS[group][name], DEMO_DEFAULTS[group][name])
                    for group in PAPER_DEFAULTS for name in PAPER_DEFAULTS[group]}
    settings = options.add_argument_group("settings")
    settings.add_argument("--recipe", metavar="NAME", help=(
        f"The paper's settings for one data set: {', '.join(recipe_names())}. WIDER and the zero-shot splits use "
        "the paper's smaller learning rates (1e-3 prompts, 2e-3 head side). Other options override it."))
    settings.add_argument("--config", metavar="FILE", help=(
        "A .yaml or .json file of options (names as in --help, with dashes or underscores; 'recipe: NAME' picks "
        "a recipe). Overrides --recipe; flags given here override the file. Unknown keys are an error."))
    settings.add_argument("--version", action="version", version=f"par-prompt {_version()}")
    for action in options._actions:
        if action.dest in run_defaults:
            paper, demo = run_defaults[action.dest]
            action.help = f"{action.help} Default: {paper} (paper recipe, with --clip); {demo} (demo, without --clip)."
        if action.default not in (None, argparse.SUPPRESS) and action.help and "Default:" not in action.help \
                and not isinstance(action, argparse._StoreFalseAction):
            action.help = f"{action.help} Default: {action.default}."
        if action.dest != "help":
            action.default = argparse.SUPPRESS  # (not set_defaults: argparse would then store SUPPRESS itself)
        if action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            action.__class__ = _given_once(type(action))
    return options


class _GivenOnce(argparse.Action):
    """Refuses an option given twice (``--epochs 1 --epochs 2``; also ``--batch-size`` and
    ``--batch_size``). With every default suppressed, an option is in the namespace only
    once it has been given."""

    def __call__(self, parser, namespace, values, option_string=None):
        if hasattr(namespace, self.dest):
            parser.error(f"{option_string or self.dest} is given twice; give each option once")
        super().__call__(parser, namespace, values, option_string)


_GIVEN_ONCE_CLASSES: dict[type, type] = {}


def _given_once(action_class: type) -> type:
    """``action_class`` with :class:`_GivenOnce`'s check before it stores the value."""
    if action_class not in _GIVEN_ONCE_CLASSES:
        _GIVEN_ONCE_CLASSES[action_class] = type(f"GivenOnce{action_class.__name__}", (_GivenOnce, action_class), {})
    return _GIVEN_ONCE_CLASSES[action_class]


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Usage errors as one line (the option list is long; --help shows it)."""
    from ..cli import report_error

    def error(message: str):
        report_error(COMMAND, f"{message} (see --help)")
        raise SystemExit(2)

    parse_known_args = parser.parse_known_args

    def parse_strictly(args=None, namespace=None):
        # as a subcommand, argparse would report unknown flags from the top-level parser, with its usage
        namespace, extras = parse_known_args(args, namespace)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    parser.error = error  # type: ignore[method-assign]
    parser.parse_known_args = parse_strictly  # type: ignore[method-assign]
    return parser


def build_parser(prog: str = "par-prompt train") -> argparse.ArgumentParser:
    """A standalone parser of the training options (``examples/train_par.py``)."""
    parser = argparse.ArgumentParser(prog=prog, usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                                     parents=[options_parser()],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    return _one_line_errors(parser)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the ``par-prompt`` command line."""
    parser = subparsers.add_parser(COMMAND, help="train PromptPAR (the demo without arguments)", usage=USAGE,
                                   description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False,
                                   parents=[options_parser()], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=run)
    return _one_line_errors(parser)


def run(args: argparse.Namespace) -> int:
    """Train with the parsed ``args``; returns the exit code (see the module docstring)."""
    from ..cli import BAD_INPUT_ERRORS, report_error
    from ..hub import HubAccessError
    from .checkpoint import CheckpointError
    from ..demo import train_demo
    from .loop import NonFiniteLossError, TrainingError, train
    from .recipe import build_arguments

    debug = os.environ.get("PAR_PROMPT_DEBUG", "").strip() not in ("", "0")
    values = {key: value for key, value in vars(args).items() if key not in NOT_OPTIONS}
    try:
        model_args, data_args, training_args, sources = build_arguments(
            values, recipe=getattr(args, "recipe", None), config=getattr(args, "config", None))
        run_training = train if model_args.clip is not None else train_demo  # no --clip: the demo
        run_training(model_args, data_args, training_args, sources=sources)
    except NonFiniteLossError as error:
        if debug:
            raise
        report_error(COMMAND, error)
        return 1
    except (TrainingError, CheckpointError, HubAccessError, *BAD_INPUT_ERRORS) as error:
        if debug:
            raise
        return report_error(COMMAND, error)
    return 0


def main(argv: Optional[Sequence[str]] = None, prog: str = "par-prompt train") -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and train. A single ``.json`` / ``.yaml``
    argument is read as ``--config FILE``."""
    from ..cli import normalize_flags

    argv = normalize_flags(sys.argv[1:] if argv is None else [str(a) for a in argv])
    if len(argv) == 1 and not argv[0].startswith("-") and argv[0].lower().endswith((".json", ".yaml", ".yml")):
        argv = ["--config", argv[0]]
    return run(build_parser(prog).parse_args(argv))
