"""Importing official checkpoints: a tokenizer of another vocabulary, files that are no
checkpoint, missing tokenizer files, the card of a re-saved import, and upload leaks."""

from __future__ import annotations

import pickle

import pytest
from huggingface_hub import ModelCard

from par_prompt.cli import main
from par_prompt.hub import model_files, write_model_card
from par_prompt.official import OfficialCheckpointError, load_official_checkpoint, read_attribute_file
from par_prompt.official import import_official_checkpoint

from .builders import write_bpe_file


def test_a_tokenizer_of_another_vocabulary_is_refused(official, merges, tmp_path):
    smaller = write_bpe_file(tmp_path / "small_bpe.txt.gz", merges[:-10])
    with pytest.raises(OfficialCheckpointError, match="not the tokenizer the checkpoint was trained with"):
        load_official_checkpoint(official.path, dataset="pa100k", clip_tokenizer=smaller)


def test_files_that_are_no_checkpoint_are_called_unreadable_not_refused(tmp_path, capsys, bpe_file):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    code = main(["import-official", str(plain), "--dataset", "pa100k", "--out", str(tmp_path / "out"),
                 "--clip-tokenizer", str(bpe_file)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is not a readable PyTorch checkpoint" in err and "could run code" not in err


def test_a_truncated_legacy_file_names_its_error(official, bpe_file, tmp_path, session_monkeypatch):
    from .builders import official_classifier_state, official_clip_state, save_official

    legacy = save_official(tmp_path / "legacy.pth", session_monkeypatch, official_clip_state(official.sizes),
                           official_classifier_state(official.sizes), legacy=True)
    legacy.write_bytes(legacy.read_bytes()[:5000])
    with pytest.raises(OfficialCheckpointError, match=r"not a readable PyTorch checkpoint \([^)]") as caught:
        load_official_checkpoint(legacy, dataset="pa100k", clip_tokenizer=bpe_file)
    assert "()" not in str(caught.value)


def test_a_missing_tokenizer_file_is_named_as_a_file(official, tmp_path):
    for spec in (tmp_path / "nope" / "bpe_simple_vocab_16e6.txt.gz", "bpe_simple_vocab_16e6.txt.gz"):
        with pytest.raises(OfficialCheckpointError, match="There is no"):
            load_official_checkpoint(official.path, dataset="pa100k", clip_tokenizer=str(spec))


def test_a_re_rendered_card_keeps_the_official_licence_and_provenance(official, bpe_file, tmp_path):
    folder = tmp_path / "imported"
    import_official_checkpoint(official.path, folder, "pa100k", clip_tokenizer=bpe_file)
    write_model_card(folder, metrics=None, training_args={"epochs": 1}, dataset_name="pa100k")
    card = ModelCard.load(folder / "README.md")
    assert (card.data.license, card.data.license_name) == ("other", "openpar")
    assert "official-checkpoint" in card.data.tags
    assert "## Imported from an official PromptPAR checkpoint" in card.text


def test_uploads_leave_out_links_out_of_the_folder_and_strangers_in_the_adapter_folder(official, bpe_file, tmp_path):
    folder = tmp_path / "imported"
    import_official_checkpoint(official.path, folder, "pa100k", clip_tokenizer=bpe_file)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub")
    (folder / "merges.txt").symlink_to(secret)
    (folder / "clip_adapter" / "optimizer.safetensors").write_bytes(b"x")
    files = model_files(folder)
    assert "merges.txt" not in files and "clip_adapter/optimizer.safetensors" not in files
    assert {"clip_adapter/adapter_model.safetensors", "clip_adapter/adapter_config.json", "config.json"} <= set(files)


def test_attribute_file_line_numbers_are_an_editor_s(tmp_path):
    path = tmp_path / "attributes.txt"
    path.write_text("hat\tA person with a hat\u2028and a scarf\nbag\n", encoding="utf-8")
    with pytest.raises(OfficialCheckpointError, match="line 2: expected NAME<TAB>SENTENCE"):
        read_attribute_file(path)


def test_a_sentence_longer_than_clip_s_context_gets_advice_that_can_be_followed():
    from par_prompt import PromptPARConfig
    from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config

    clip = tiny_clip_config()
    context = clip.text_config.max_position_embeddings
    ids = [[1] + [5] * (context + 40) + [2]]
    with pytest.raises(ValueError, match=f"shorten it to at most {context} tokens") as caught:
        PromptPARConfig(attributes=["a"], sentences=["a very long sentence"], sentence_token_ids=ids, text_prompts=0,
                        clip_config=clip, fusion_config=tiny_vit_config())
    assert "use at most -" not in str(caught.value)
