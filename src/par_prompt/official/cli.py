"""The ``par-prompt import-official`` subcommand."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from .tables import OFFICIAL_TABLES
from .tokenizer import DEFAULT_CLIP_TOKENIZER

COMMAND = "import-official"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``import-official CKPT --out DIR [--dataset NAME] [--attributes FILE] [--attribute-order DATA]
    [--bundle-base] [--clip-tokenizer X]``."""
    parser = subparsers.add_parser(
        COMMAND,
        help="turn a checkpoint of the official PromptPAR code into a par-prompt model",
        description=(
            "Convert a .pth checkpoint of the official PromptPAR code (Event-AHU/OpenPAR) into a par-prompt model "
            "folder whose predictions are those of the official code: its preprocessing (224x224 resize without "
            "padding, mean = std = 0.5), its visual tokens (no post-LayerNorm) and its threshold (0.45) are recorded "
            "in the model. The file is read without unpickling code."
        ),
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="the official checkpoint (.pth)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output model folder (must not exist)")
    parser.add_argument(
        "--dataset", metavar="NAME",
        help=f"data set the checkpoint was trained on: {', '.join(OFFICIAL_TABLES)} (any case; 'rap' lets the head "
        "count choose); default: the one data set with as many attributes as the checkpoint has heads",
    )
    parser.add_argument(
        "--attributes", metavar="FILE",
        help="attribute names and sentences for a checkpoint trained on other data: a UTF-8 text file with one "
        "NAME<TAB>SENTENCE line per head, in head order ('#' lines and empty lines are skipped)",
    )
    parser.add_argument(
        "--attribute-order", metavar="DATA",
        help="output the attributes in the order of DATA, a data set converted with 'par-prompt convert' (folder "
        "or Hub id), so that 'par-prompt evaluate' and training accept it; the official PETA and RAPv2 heads are "
        "grouped by body part, the converted data keep the annotation files' order",
    )
    parser.add_argument(
        "--bundle-base", action="store_true",
        help="also write the checkpoint's CLIP weights into the folder, so it loads with no download",
    )
    parser.add_argument(
        "--clip-tokenizer", default=DEFAULT_CLIP_TOKENIZER, metavar="ID_OR_PATH",
        help="CLIP tokenizer: a Hub id, a folder, or the official bpe_simple_vocab_16e6.txt.gz "
        f"(default {DEFAULT_CLIP_TOKENIZER})",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..cli import report_error
    from . import load_official_checkpoint, read_attribute_file, save_official_model
    from .errors import OfficialCheckpointError

    out = Path(args.out)
    if out.exists():
        kind = "a file" if not out.is_dir() else "a directory"
        return report_error(COMMAND, f"--out {out} already exists ({kind}); give a new directory.")
    try:
        names = sentences = order = None
        if args.attributes is not None:
            names, sentences = read_attribute_file(args.attributes)
        if args.attribute_order is not None:
            order = _data_attributes(args.attribute_order)
        print(f"reading {args.checkpoint} ...", flush=True)
        model, processor = load_official_checkpoint(
            args.checkpoint, args.dataset, attributes=names, sentences=sentences, attribute_order=order,
            clip_tokenizer=args.clip_tokenizer,
        )
        save_official_model(model, processor, out, bundle_base=args.bundle_base)
    except (OfficialCheckpointError, pickle.UnpicklingError, ValueError, OSError, KeyError) as error:
        return report_error(COMMAND, error)
    config = model.config
    source = config.imported_from
    base = "bundled" if args.bundle_base or config.clip_name_or_path is None else config.clip_name_or_path
    print(f"wrote {out}: {config.num_attributes} attributes ({source['dataset'] or 'given'}), "
          f"epoch {source['epoch'] if source['epoch'] is not None else '?'}, CLIP base: {base}")
    print(f"official pipeline recorded: {config.clip_config.vision_config.image_size} px resize without padding, "
          f"mean = std = 0.5, no post-LayerNorm on visual tokens, threshold {config.threshold}")
    return 0


def _data_attributes(source: str) -> list[str]:
    """The attribute names of a converted data set (its metadata only is read)."""
    from ..data import load

    try:
        return list(load(source).attributes)
    except Exception as error:  # noqa: BLE001 - datasets raises many types for "cannot load"
        raise ValueError(f"cannot read the attribute names of --attribute-order {source!r}: {error}") from error
