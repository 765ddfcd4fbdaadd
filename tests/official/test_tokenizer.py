"""OpenAI's BPE vocabulary file becomes the CLIP tokenizer it describes."""

from __future__ import annotations

import gzip

import pytest

from par_prompt.official import OFFICIAL_TABLES, OfficialCheckpointError, clip_tokenizer_from_bpe, load_clip_tokenizer
from par_prompt.official.tokenizer import MAX_MERGES

from .builders import reference_tokenizer, vocabulary, write_bpe_file

TEXTS = [s for table in OFFICIAL_TABLES.values() for s in table.sentences] + [
    "Somebody's UNKNOWN words, digits 1234 & punctuation!?", "  spaced\tout  ", "t-shirt's V-neck",
]


def test_converted_tokenizer_matches_one_built_from_vocab_and_merges(bpe_file, merges):
    converted, expected = clip_tokenizer_from_bpe(bpe_file), reference_tokenizer(merges)
    assert converted(TEXTS)["input_ids"] == expected(TEXTS)["input_ids"]
    assert converted.get_vocab() == vocabulary(merges)


def test_vocabulary_layout_and_special_tokens(bpe_file, merges):
    tokenizer = clip_tokenizer_from_bpe(bpe_file)
    vocab = tokenizer.get_vocab()
    size = 512 + len(merges) + 2
    assert len(vocab) == size
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (size - 2, size - 1, size - 1)
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["".join(merges[0])] == 512
    ids = tokenizer("A female pedestrian")["input_ids"]
    assert ids[0] == size - 2 and ids[-1] == size - 1 and max(ids) == size - 1
    assert tokenizer.model_max_length == 77


def test_only_the_merges_openai_reads_are_used(tmp_path):
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    merges = [(a, b) for a in chars for b in chars][: MAX_MERGES + 10]
    tokenizer = clip_tokenizer_from_bpe(write_bpe_file(tmp_path / "full.txt.gz", merges))
    vocab = tokenizer.get_vocab()
    assert len(vocab) == 49408 and tokenizer.eos_token_id == 49407 and tokenizer.bos_token_id == 49406
    assert "".join(merges[MAX_MERGES - 1]) in vocab and "".join(merges[MAX_MERGES]) not in vocab


def test_load_clip_tokenizer_from_a_folder(tmp_path, merges):
    reference_tokenizer(merges).save_pretrained(tmp_path / "tok")
    assert load_clip_tokenizer(tmp_path / "tok")(TEXTS)["input_ids"] == reference_tokenizer(merges)(TEXTS)["input_ids"]


@pytest.mark.parametrize("content, message", [
    (None, "not a gzip-compressed BPE vocabulary"),
    ("header\na b c\n", "line 2: a merge is two symbols"),
    ("header only\n", "holds no BPE merges"),
])
def test_bad_bpe_files(content, message, tmp_path):
    path = tmp_path / "bpe.txt.gz"
    if content is None:
        path.write_text("plain text, not gzip")
    else:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(content)
    with pytest.raises(OfficialCheckpointError, match=message):
        clip_tokenizer_from_bpe(path)


def test_unloadable_tokenizer_spec(tmp_path):
    with pytest.raises(OfficialCheckpointError, match="--clip-tokenizer"):
        load_clip_tokenizer(str(tmp_path / "no" / "such" / "tokenizer"))
