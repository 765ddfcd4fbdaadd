"""The official sentence tables, dataset names and the --attributes file."""

from __future__ import annotations

import pytest

from par_prompt.official import OFFICIAL_TABLES, OfficialCheckpointError, find_table, read_attribute_file
from par_prompt.sentences import DATASET_ATTRIBUTES


def test_table_sizes_are_the_official_head_counts():
    # clip/model.py: datasets_attrnum
    sizes = {"pa100k": 26, "peta": 35, "peta_zs": 35, "rapv1": 51, "rapv2": 54, "rap_zs": 53, "wider": 14}
    assert {key: len(table) for key, table in OFFICIAL_TABLES.items()} == sizes
    for table in OFFICIAL_TABLES.values():
        assert len(table.sentences) == len(table.attributes) == len(set(table.attributes))


@pytest.mark.parametrize("key, source", [("pa100k", "pa100k"), ("peta", "peta"), ("peta_zs", "peta"),
                                         ("rapv1", "rapv1"), ("rapv2", "rapv2")])
def test_names_are_those_par_prompt_gives_the_label_columns(key, source):
    assert set(OFFICIAL_TABLES[key].attributes) == set(DATASET_ATTRIBUTES[source])


def test_rap_zs_is_rapv2_without_age46_60():
    assert set(OFFICIAL_TABLES["rapv2"].attributes) - set(OFFICIAL_TABLES["rap_zs"].attributes) == {"Age46-60"}


@pytest.mark.parametrize("key, index, name, sentence", [
    # Spot checks against the official attr_words, including their order and odd spellings.
    ("pa100k", 0, "Female", "A female pedestrian"),
    ("pa100k", 25, "boots", "A pedestrian wearing boots"),
    ("peta", 2, "accessoryNothing", "A pedestrian with no headwear"),
    ("peta", 34, "personalMale", "A male pedestrian"),
    ("rapv1", 0, "Female", "female"),  # rap1_pad.py's attributes are short phrases
    ("rapv1", 47, "action-Pusing", "action pushing"),
    ("rapv2", 0, "hs-BaldHead", "A pedestrian with a bald head"),  # group order: head first
    ("rapv2", 39, "Female", "A female pedestrian"),
    ("rapv2", 53, "action-Other", "A pedestrian engaged in other actions"),
    ("rap_zs", 38, "Female", "A female pedestrian"),
    ("wider", 3, "Hat", " pedestrian wearing a hat"),
    ("wider", 13, "stripe", "A pedestrian who is plaid"),
])
def test_official_sentences(key, index, name, sentence):
    table = OFFICIAL_TABLES[key]
    assert (table.attributes[index], table.sentences[index]) == (name, sentence)


@pytest.mark.parametrize("name, heads, key", [
    ("PA100k", 26, "pa100k"), ("pa-100k", 26, "pa100k"), ("PETA", 35, "peta"), ("PETAzs", 35, "peta_zs"),
    ("peta_zs", 35, "peta_zs"), ("RAPV1", 51, "rapv1"), ("rap2", 54, "rapv2"), ("RAP", 51, "rapv1"),
    ("rap", 54, "rapv2"), ("RAPzs", 53, "rap_zs"), ("Wider", 14, "wider"), (None, 26, "pa100k"),
    (None, 53, "rap_zs"),
])
def test_find_table(name, heads, key):
    assert find_table(name, heads).key == key


@pytest.mark.parametrize("name, heads, message", [
    ("market1501", 26, r"unknown dataset 'market1501'.*--attributes"),
    ("peta", 26, r"26 attribute heads but peta has 35 \(peta\); 26 heads match pa100k.*--attributes"),
    ("rap", 26, r"51 \(rapv1\) or 54 \(rapv2\)"),
    (None, 7, r"7 attribute heads, which matches no official data set.*--attributes"),
    (None, 35, r"--dataset peta or --dataset peta_zs"),
])
def test_find_table_errors(name, heads, message):
    with pytest.raises(OfficialCheckpointError, match=message):
        find_table(name, heads)


def test_attribute_file(tmp_path):
    path = tmp_path / "attributes.tsv"
    path.write_text("# my data\n\nHat\tA pedestrian wearing a hat\n  \nBag\tA pedestrian with a bag \n",
                    encoding="utf-8")
    assert read_attribute_file(path) == (["Hat", "Bag"], ["A pedestrian wearing a hat", "A pedestrian with a bag"])


@pytest.mark.parametrize("text, message", [
    ("Hat A pedestrian wearing a hat\n", r"line 1: expected NAME<TAB>SENTENCE"),
    ("Hat\tA hat\tB\n", r"line 1"),
    ("Hat\t \n", r"line 1"),
    ("# nothing\n", r"holds no NAME<TAB>SENTENCE line"),
    ("Hat\ta\nHat\tb\n", r"repeats the attribute name\(s\) \['Hat'\]"),
])
def test_attribute_file_errors(text, message, tmp_path):
    path = tmp_path / "attributes.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OfficialCheckpointError, match=message):
        read_attribute_file(path)


def test_attribute_file_unreadable(tmp_path):
    with pytest.raises(OfficialCheckpointError, match="cannot read"):
        read_attribute_file(tmp_path / "missing.tsv")
    (tmp_path / "latin1.tsv").write_bytes("Hat\tA caf\xe9\n".encode("latin-1"))
    with pytest.raises(OfficialCheckpointError, match="not UTF-8"):
        read_attribute_file(tmp_path / "latin1.tsv")
