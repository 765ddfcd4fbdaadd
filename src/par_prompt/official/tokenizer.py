"""The CLIP tokenizer of an imported model: a Hub id, a folder, or OpenAI's BPE file.

The official code tokenizes with OpenAI's ``simple_tokenizer`` and its vocabulary file
``bpe_simple_vocab_16e6.txt.gz``. That file is gzip-compressed UTF-8 text: a header line,
then one BPE merge per line, two space-separated symbols written in the byte-to-unicode
alphabet of GPT-2 (``</w>`` marks the end of a word). The tokenizer uses the first
49152 - 256 - 2 = 48894 merges, and its vocabulary is, in id order: the 256 byte
symbols, the same 256 with ``</w>``, one token per merge (its two symbols joined), then
``<|startoftext|>`` and ``<|endoftext|>``. :func:`clip_tokenizer_from_bpe` builds the
same tokenizer as a ``transformers.CLIPTokenizer``, so it is saved with the model.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Union

from .errors import OfficialCheckpointError

DEFAULT_CLIP_TOKENIZER = "openai/clip-vit-large-patch14"
BOS_TOKEN, EOS_TOKEN, END_OF_WORD = "<|startoftext|>", "<|endoftext|>", "</w>"
#: Merges the OpenAI tokenizer reads from its file (its vocabulary then has 49408 tokens).
MAX_MERGES = 49152 - 256 - 2
CONTEXT_LENGTH = 77


def _read_merges(path: Path) -> list[tuple[str, str]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise OfficialCheckpointError(
            f"{path} is not a gzip-compressed BPE vocabulary like bpe_simple_vocab_16e6.txt.gz ({error})."
        ) from error
    merges = []
    for number, line in enumerate(lines[1 : MAX_MERGES + 1], start=2):
        if not line:  # the file ends with a newline
            continue
        parts = line.split()
        if len(parts) != 2:
            raise OfficialCheckpointError(f"{path} line {number}: a merge is two symbols, got {line!r}.")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise OfficialCheckpointError(f"{path} holds no BPE merges after its header line.")
    return merges


def clip_tokenizer_from_bpe(path: Union[str, Path]):
    """A ``CLIPTokenizer`` equal to OpenAI's ``SimpleTokenizer`` on the BPE file ``path``."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merges = _read_merges(Path(path))
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + END_OF_WORD for symbol in symbols] + ["".join(pair) for pair in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}  # a repeated token keeps its last id, as in OpenAI's
    return CLIPTokenizer(
        vocab=vocab, merges=merges, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN, unk_token=EOS_TOKEN, model_max_length=CONTEXT_LENGTH,
    )


def load_clip_tokenizer(spec: Union[str, Path] = DEFAULT_CLIP_TOKENIZER):
    """The tokenizer named by ``spec``: a ``.txt.gz`` BPE file (converted), a folder with
    tokenizer files, or a Hub id (the local Hugging Face cache is used when offline)."""
    from transformers import AutoTokenizer

    from ..modeling.loading import check_not_a_missing_path

    path = Path(spec)
    if path.is_file():
        return clip_tokenizer_from_bpe(path)
    try:
        check_not_a_missing_path(str(spec))
        if str(spec).endswith(".gz"):  # a BPE file name is never a Hub id
            raise FileNotFoundError(f"There is no file {spec}.")
    except FileNotFoundError as error:
        raise OfficialCheckpointError(
            f"cannot load a CLIP tokenizer (--clip-tokenizer): {error} Give the path of the official "
            "bpe_simple_vocab_16e6.txt.gz, a tokenizer folder, or a Hub id."
        ) from None
    try:
        return AutoTokenizer.from_pretrained(str(spec))
    except (OSError, ValueError) as error:
        where = "folder" if path.is_dir() else "Hub id"
        raise OfficialCheckpointError(
            f"cannot load a CLIP tokenizer from the {where} {str(spec)!r} ({' '.join(str(error).split())[:200]}). "
            "Pass --clip-tokenizer with a folder holding one, the official bpe_simple_vocab_16e6.txt.gz, or a Hub "
            "id that is downloaded or in the local cache."
        ) from error
