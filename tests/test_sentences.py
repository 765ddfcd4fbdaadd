"""Tests for par_prompt.sentences: tables, template fallback, user overrides."""

import ast
import inspect
import warnings

import pytest

from par_prompt import sentences as sentences_module
from par_prompt.sentences import (
    ATTRIBUTE_SENTENCES,
    DATASET_ATTRIBUTES,
    MAX_SENTENCE_WORDS,
    expand_attributes,
    normalize_dataset_name,
    resolve_sentences,
    split_words,
    template_sentence,
)

# Raw names as the benchmarks' annotation files spell them (typos included).
PA100K = (
    "Female AgeOver60 Age18-60 AgeLess18 Front Side Back Hat Glasses HandBag ShoulderBag "
    "Backpack HoldObjectsInFront ShortSleeve LongSleeve UpperStride UpperLogo UpperPlaid "
    "UpperSplice LowerStripe LowerPattern LongCoat Trousers Shorts Skirt&Dress boots"
).split()
PETA = (
    "accessoryHat accessoryMuffler accessoryNothing accessorySunglasses hairLong "
    "upperBodyCasual upperBodyFormal upperBodyJacket upperBodyLogo upperBodyPlaid "
    "upperBodyShortSleeve upperBodyThinStripes upperBodyTshirt upperBodyOther upperBodyVNeck "
    "lowerBodyCasual lowerBodyFormal lowerBodyJeans lowerBodyShorts lowerBodyShortSkirt "
    "lowerBodyTrousers footwearLeatherShoes footwearSandals footwearShoes footwearSneaker "
    "carryingBackpack carryingOther carryingMessengerBag carryingNothing carryingPlasticBags "
    "personalLess30 personalLess45 personalLess60 personalLarger60 personalMale"
).split()
RAPV1 = (
    "Female AgeLess16 Age17-30 Age31-45 BodyFat BodyNormal BodyThin Customer Clerk "
    "hs-BaldHead hs-LongHair hs-BlackHair hs-Hat hs-Glasses hs-Muffler ub-Shirt ub-Sweater "
    "ub-Vest ub-TShirt ub-Cotton ub-Jacket ub-SuitUp ub-Tight ub-ShortSleeve lb-LongTrousers "
    "lb-Skirt lb-ShortSkirt lb-Dress lb-Jeans lb-TightTrousers shoes-Leather shoes-Sport "
    "shoes-Boots shoes-Cloth shoes-Casual attach-Backpack attach-SingleShoulderBag "
    "attach-HandBag attach-Box attach-PlasticBag attach-PaperBag attach-HandTrunk attach-Other "
    "action-Calling action-Talking action-Gathering action-Holding action-Pusing action-Pulling "
    "action-CarrybyArm action-CarrybyHand"
).split()
RAPV2 = (
    "Female AgeLess16 Age17-30 Age31-45 Age46-60 BodyFat BodyNormal BodyThin Customer Employee "
    "hs-BaldHead hs-LongHair hs-BlackHair hs-Hat hs-Glasses ub-Shirt ub-Sweater ub-Vest "
    "ub-TShirt ub-Cotton ub-Jacket ub-SuitUp ub-Tight ub-ShortSleeve ub-Others lb-LongTrousers "
    "lb-Skirt lb-ShortSkirt lb-Dress lb-Jeans lb-TightTrousers shoes-Leather shoes-Sports "
    "shoes-Boots shoes-Cloth shoes-Casual shoes-Other attachment-Backpack attachment-ShoulderBag "
    "attachment-HandBag attachment-Box attachment-PlasticBag attachment-PaperBag "
    "attachment-HandTrunk attachment-Other action-Calling action-Talking action-Gathering "
    "action-Holding action-Pushing action-Pulling action-CarryingByArm action-CarryingByHand "
    "action-Other"
).split()

EXPECTED = {"pa100k": PA100K, "peta": PETA, "rapv1": RAPV1, "rapv2": RAPV2}


@pytest.mark.parametrize("dataset,count", [("pa100k", 26), ("peta", 35), ("rapv1", 51), ("rapv2", 54)])
def test_table_counts_and_raw_names(dataset, count):
    assert len(EXPECTED[dataset]) == count  # guards the hand-written list above
    assert len(ATTRIBUTE_SENTENCES[dataset]) == count
    assert list(DATASET_ATTRIBUTES[dataset]) == EXPECTED[dataset]


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_no_duplicate_sentences_within_a_table(dataset):
    sentences = list(ATTRIBUTE_SENTENCES[dataset].values())
    duplicates = {s for s in sentences if sentences.count(s) > 1}
    assert not duplicates


def test_no_duplicate_keys_in_source():
    # A repeated key in a dict literal silently overwrites the first entry.
    tree = ast.parse(inspect.getsource(sentences_module))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
        if isinstance(node, ast.Tuple) and len(node.elts) > 20:  # the raw-order tuples
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            assert len(values) == len(set(values))


def test_sentences_are_short_english_sentences():
    for table in ATTRIBUTE_SENTENCES.values():
        for name, sentence in table.items():
            assert sentence.startswith("A "), (name, sentence)
            assert sentence == sentence.strip() and "  " not in sentence
            assert len(sentence.split()) < MAX_SENTENCE_WORDS


def test_shared_names_have_one_sentence_across_tables():
    seen = {}
    for table in ATTRIBUTE_SENTENCES.values():
        for name, sentence in table.items():
            assert seen.setdefault(name, sentence) == sentence, name


def test_examples_from_the_spec():
    assert expand_attributes(["AgeOver60", "Hat"], dataset="pa100k") == [
        "A pedestrian over 60 years old",
        "A pedestrian wearing a hat",
    ]
    assert expand_attributes(["hs-LongHair", "hairLong"]) == [
        "A pedestrian whose hair is long",
        "A pedestrian whose hair is long",
    ]


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_lookup_without_dataset_matches_dataset_table(dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_dataset = expand_attributes(EXPECTED[dataset], dataset=dataset)
        anywhere = expand_attributes(EXPECTED[dataset])
    assert by_dataset == anywhere == [ATTRIBUTE_SENTENCES[dataset][n] for n in EXPECTED[dataset]]


def test_dataset_aliases():
    assert normalize_dataset_name("PA-100K") == "pa100k"
    assert normalize_dataset_name("RAP") == "rapv1"
    assert normalize_dataset_name("RAPv2") == "rapv2"
    assert normalize_dataset_name("rap_zs") == "rapv2"
    assert normalize_dataset_name("PETA-ZS") == "peta"
    with pytest.raises(ValueError, match="no attribute-sentence table for dataset 'market1501'"):
        expand_attributes(["Female"], dataset="market1501")


def test_dataset_table_is_restrictive():
    # Age46-60 is a RAPv2 attribute, not a RAPv1 one: with dataset="rapv1" it is unknown.
    with pytest.warns(UserWarning, match="Age46-60"):
        expand_attributes(["Age46-60"], dataset="rapv1")


def test_unknown_names_use_template_with_one_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = expand_attributes(["Female", "ub-WoolCoat", "carryingUmbrella"], dataset="rapv1")
    assert out == [
        "A female pedestrian",
        "A pedestrian with wool coat on the upper body",
        "A pedestrian carrying umbrella",
    ]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "ub-WoolCoat" in message and "carryingUmbrella" in message and "'Female'" not in message


@pytest.mark.parametrize(
    "name,expected",
    [
        ("Age46-60", "A pedestrian between 46 and 60 years old"),
        ("AgeLess16", "A pedestrian under 16 years old"),
        ("AgeOver60", "A pedestrian over 60 years old"),
        ("personalLess15", "A pedestrian under 15 years old"),
        ("personalLarger60", "A pedestrian over 60 years old"),
        ("personalFemale", "A female pedestrian"),
        ("Male", "A male pedestrian"),
        ("hs-LongHair", "A pedestrian with long hair"),
        ("hairBlack", "A pedestrian whose hair is black"),
        ("accessoryHeadphone", "A pedestrian wearing headphone"),
        ("upperBodyNoSleeve", "A pedestrian with no sleeve on the upper body"),
        ("ub-TShirt", "A pedestrian with t shirt on the upper body"),
        ("up-Black", "A pedestrian with black on the upper body"),
        ("lowerBodyHotPants", "A pedestrian with hot pants on the lower body"),
        ("lb-LongTrousers", "A pedestrian with long trousers on the lower body"),
        ("footwearBoots", "A pedestrian with boots footwear"),
        ("shoes-White", "A pedestrian with white footwear"),
        ("attach-WaistBag", "A pedestrian carrying waist bag"),
        ("attachment-Baby", "A pedestrian carrying baby"),
        ("action-Running", "A pedestrian who is running"),
        ("Skirt&Dress", "A pedestrian with skirt and dress"),
        ("faceMask", "A pedestrian with face mask"),
        ("Hat", "A pedestrian with hat"),  # "Hat" must not be read as the "hair" prefix
    ],
)
def test_template(name, expected):
    assert template_sentence(name) == expected


def test_split_words():
    assert split_words("HoldObjectsInFront") == ["hold", "objects", "in", "front"]
    assert split_words("Skirt&Dress") == ["skirt", "and", "dress"]
    assert split_words("Age17-30") == ["age", "17", "30"]
    assert split_words("ub-TShirt") == ["ub", "t", "shirt"]


def test_bad_names_raise():
    with pytest.raises(ValueError, match="#1"):
        expand_attributes(["Female", ""])
    with pytest.raises(ValueError, match="not a single string"):
        expand_attributes("Female")


def test_resolve_sentences_default_is_expansion():
    assert resolve_sentences(["Female", "boots"], dataset="pa100k") == [
        "A female pedestrian",
        "A pedestrian wearing boots",
    ]


def test_resolve_sentences_user_override():
    mine = ["a woman", "someone in boots"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no lookup, so no unknown-name warning either
        assert resolve_sentences(["x-Unknown", "y-Unknown"], sentences=mine) == mine


def test_resolve_sentences_validation():
    names = ["Female", "boots"]
    with pytest.raises(ValueError, match="got 1 sentences for 2 attributes"):
        resolve_sentences(names, sentences=["only one"])
    with pytest.raises(ValueError, match=r"sentence #1 \(attribute 'boots'\)"):
        resolve_sentences(names, sentences=["a woman", "   "])
    with pytest.raises(ValueError, match=r"sentence #0 \(attribute 'Female'\)"):
        resolve_sentences(names, sentences=[None, "boots"])
    with pytest.raises(ValueError, match="not a single string"):
        resolve_sentences(names, sentences="a woman")
