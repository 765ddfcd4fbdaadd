"""Importing the checkpoints of the official PromptPAR code (``par-prompt import-official``).

:func:`load_official_checkpoint` reads a ``.pth`` file of the official code safely and
returns a :class:`~par_prompt.PromptPARModel` that predicts what the official code
predicts, with its :class:`~par_prompt.PromptPARProcessor`; :func:`save_official_model`
writes both with a model card that records where they came from.
:func:`import_official_checkpoint` does both.
"""

from .checkpoint import OfficialCheckpoint, read_checkpoint
from .errors import OfficialCheckpointError
from .importer import load_official_checkpoint, save_official_model
from .keymap import OfficialLayout, convert, read_layout
from .tables import OFFICIAL_TABLES, SentenceTable, find_table, read_attribute_file
from .tokenizer import DEFAULT_CLIP_TOKENIZER, clip_tokenizer_from_bpe, load_clip_tokenizer


def import_official_checkpoint(path, out, dataset=None, *, bundle_base: bool = False, **kwargs):
    """:func:`load_official_checkpoint` then :func:`save_official_model` to the new folder
    ``out``; returns ``(model, processor)``."""
    model, processor = load_official_checkpoint(path, dataset, **kwargs)
    save_official_model(model, processor, out, bundle_base=bundle_base)
    return model, processor


__all__ = [
    "DEFAULT_CLIP_TOKENIZER",
    "OFFICIAL_TABLES",
    "OfficialCheckpoint",
    "OfficialCheckpointError",
    "OfficialLayout",
    "SentenceTable",
    "clip_tokenizer_from_bpe",
    "convert",
    "find_table",
    "import_official_checkpoint",
    "load_clip_tokenizer",
    "load_official_checkpoint",
    "read_attribute_file",
    "read_checkpoint",
    "read_layout",
    "save_official_model",
]
