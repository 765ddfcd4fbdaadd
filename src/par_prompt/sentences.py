"""Attribute names -> one English sentence each (docs/method.md §1).

PromptPAR feeds the CLIP text tower one sentence per attribute instead of the raw
attribute name ("A pedestrian whose hair is long" instead of ``hairLong``). This module
turns an ordered list of raw names into such sentences in two ways:

1. **Hand-written tables**, one per benchmark, keyed by the raw names the benchmark's
   annotation files use (see ``DATASET_ATTRIBUTES`` for the names in their raw order):

   ===========  ====  ==============================================================
   dataset      N     which names
   ===========  ====  ==============================================================
   ``pa100k``   26    all attributes of PA100K's ``annotation.mat``
   ``peta``     35    the 35-attribute evaluation protocol (first 35 of 105)
   ``rapv1``    51    the first 51 entries of RAPv1's ``attribute_eng``
   ``rapv2``    54    RAPv2's ``selected_attribute`` (the evaluated 54)
   ===========  ====  ==============================================================

   The raw names follow the preprocessing scripts of Rethinking_of_PAR
   (``dataset/pedes_attr/annotation.md``), which PromptPAR's official code reuses.
   Note the datasets' own spellings are kept on purpose: RAPv1 has ``action-Pusing``
   (sic) and ``shoes-Sport``, RAPv2 has ``action-Pushing``, ``shoes-Sports`` and
   ``attachment-*`` instead of ``attach-*``. The official code reorders PETA/RAP
   attributes into body-part groups; a lookup is by name, so order does not matter here.
   The zero-shot splits reuse these names (PETA-ZS: PETA's 35; RAP-ZS: RAPv2's 54 minus
   ``Age46-60``), hence the aliases ``peta_zs`` and ``rap_zs``.

2. **A template** for any other name (:func:`template_sentence`): a known prefix
   (``hs-``, ``ub-``, ``lb-``, ``shoes-``, ``attach-``, ``action-``, ``upperBody``,
   ``lowerBody``, ``footwear``, ``carrying``, ``accessory``, ``personal``, ...) picks a
   phrase pattern, the rest of the name is split at camelCase / ``-`` / ``_`` / ``&``
   into lower-case words, and age ranges (``Age17-30``, ``AgeLess16``, ``AgeOver60``)
   get their own patterns. E.g. ``ub-WoolCoat`` -> "A pedestrian with wool coat on the
   upper body", ``Age46-60`` -> "A pedestrian between 46 and 60 years old".

Sentences are kept short (well under :data:`MAX_SENTENCE_WORDS` words): the CLIP text
tower has 77 positions, 3 of which hold the text prompts and 2 the start/end tokens.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

__all__ = [
    "ATTRIBUTE_SENTENCES",
    "DATASET_ATTRIBUTES",
    "MAX_SENTENCE_WORDS",
    "expand_attributes",
    "normalize_dataset_name",
    "resolve_sentences",
    "split_words",
    "template_sentence",
]

#: Soft upper bound on the words in a table sentence (tested); CLIP allows 77 tokens.
MAX_SENTENCE_WORDS = 40

# --------------------------------------------------------------------------------------
# Hand-written tables: raw name -> sentence, in each dataset's raw attribute order.
# Names shared between datasets map to the same sentence (a test checks this), so a
# lookup with ``dataset=None`` is unambiguous.
# --------------------------------------------------------------------------------------

_PA100K: dict[str, str] = {
    "Female": "A female pedestrian",
    "AgeOver60": "A pedestrian over 60 years old",
    "Age18-60": "A pedestrian between 18 and 60 years old",
    "AgeLess18": "A pedestrian under 18 years old",
    "Front": "A pedestrian seen from the front",
    "Side": "A pedestrian seen from the side",
    "Back": "A pedestrian seen from the back",
    "Hat": "A pedestrian wearing a hat",
    "Glasses": "A pedestrian wearing glasses",
    "HandBag": "A pedestrian carrying a handbag",
    "ShoulderBag": "A pedestrian carrying a shoulder bag",
    "Backpack": "A pedestrian carrying a backpack",
    "HoldObjectsInFront": "A pedestrian holding objects in front of the body",
    "ShortSleeve": "A pedestrian whose upper clothing has short sleeves",
    "LongSleeve": "A pedestrian whose upper clothing has long sleeves",
    "UpperStride": "A pedestrian whose upper clothing has stripes",
    "UpperLogo": "A pedestrian whose upper clothing has a logo",
    "UpperPlaid": "A pedestrian whose upper clothing is plaid",
    "UpperSplice": "A pedestrian whose upper clothing is spliced from different colors",
    "LowerStripe": "A pedestrian whose lower clothing has stripes",
    "LowerPattern": "A pedestrian whose lower clothing has a pattern",
    "LongCoat": "A pedestrian wearing a long coat",
    "Trousers": "A pedestrian wearing trousers",
    "Shorts": "A pedestrian wearing shorts",
    "Skirt&Dress": "A pedestrian wearing a skirt or a dress",
    "boots": "A pedestrian wearing boots",
}

_PETA: dict[str, str] = {
    "accessoryHat": "A pedestrian wearing a hat",
    "accessoryMuffler": "A pedestrian wearing a muffler",
    "accessoryNothing": "A pedestrian wearing no accessory",
    "accessorySunglasses": "A pedestrian wearing sunglasses",
    "hairLong": "A pedestrian whose hair is long",
    "upperBodyCasual": "A pedestrian whose upper clothing is casual",
    "upperBodyFormal": "A pedestrian whose upper clothing is formal",
    "upperBodyJacket": "A pedestrian wearing a jacket",
    "upperBodyLogo": "A pedestrian whose upper clothing has a logo",
    "upperBodyPlaid": "A pedestrian whose upper clothing is plaid",
    "upperBodyShortSleeve": "A pedestrian whose upper clothing has short sleeves",
    "upperBodyThinStripes": "A pedestrian whose upper clothing has thin stripes",
    "upperBodyTshirt": "A pedestrian wearing a T-shirt",
    "upperBodyOther": "A pedestrian wearing other upper clothing",
    "upperBodyVNeck": "A pedestrian whose upper clothing has a V-neck",
    "lowerBodyCasual": "A pedestrian whose lower clothing is casual",
    "lowerBodyFormal": "A pedestrian whose lower clothing is formal",
    "lowerBodyJeans": "A pedestrian wearing jeans",
    "lowerBodyShorts": "A pedestrian wearing shorts",
    "lowerBodyShortSkirt": "A pedestrian wearing a short skirt",
    "lowerBodyTrousers": "A pedestrian wearing trousers",
    "footwearLeatherShoes": "A pedestrian wearing leather shoes",
    "footwearSandals": "A pedestrian wearing sandals",
    "footwearShoes": "A pedestrian wearing other kinds of shoes",
    "footwearSneaker": "A pedestrian wearing sneakers",
    "carryingBackpack": "A pedestrian carrying a backpack",
    "carryingOther": "A pedestrian carrying other things",
    "carryingMessengerBag": "A pedestrian carrying a messenger bag",
    "carryingNothing": "A pedestrian carrying nothing",
    "carryingPlasticBags": "A pedestrian carrying plastic bags",
    "personalLess30": "A pedestrian under 30 years old",
    "personalLess45": "A pedestrian between 30 and 45 years old",
    "personalLess60": "A pedestrian between 45 and 60 years old",
    "personalLarger60": "A pedestrian over 60 years old",
    "personalMale": "A male pedestrian",
}

# Shared by RAPv1 and RAPv2 (same raw name, same meaning).
_RAP_COMMON: dict[str, str] = {
    "Female": "A female pedestrian",
    "AgeLess16": "A pedestrian under 16 years old",
    "Age17-30": "A pedestrian between 17 and 30 years old",
    "Age31-45": "A pedestrian between 31 and 45 years old",
    "Age46-60": "A pedestrian between 46 and 60 years old",
    "BodyFat": "A pedestrian whose body is fat",
    "BodyNormal": "A pedestrian whose body is of normal build",
    "BodyThin": "A pedestrian whose body is thin",
    "Customer": "A pedestrian who is a customer",
    "hs-BaldHead": "A pedestrian whose head is bald",
    "hs-LongHair": "A pedestrian whose hair is long",
    "hs-BlackHair": "A pedestrian whose hair is black",
    "hs-Hat": "A pedestrian wearing a hat",
    "hs-Glasses": "A pedestrian wearing glasses",
    "hs-Muffler": "A pedestrian wearing a muffler",
    "ub-Shirt": "A pedestrian wearing a shirt",
    "ub-Sweater": "A pedestrian wearing a sweater",
    "ub-Vest": "A pedestrian wearing a vest",
    "ub-TShirt": "A pedestrian wearing a T-shirt",
    "ub-Cotton": "A pedestrian wearing a cotton-padded coat",
    "ub-Jacket": "A pedestrian wearing a jacket",
    "ub-SuitUp": "A pedestrian wearing a suit",
    "ub-Tight": "A pedestrian whose upper clothing is tight",
    "ub-ShortSleeve": "A pedestrian whose upper clothing has short sleeves",
    "lb-LongTrousers": "A pedestrian wearing long trousers",
    "lb-Skirt": "A pedestrian wearing a skirt",
    "lb-ShortSkirt": "A pedestrian wearing a short skirt",
    "lb-Dress": "A pedestrian wearing a dress",
    "lb-Jeans": "A pedestrian wearing jeans",
    "lb-TightTrousers": "A pedestrian wearing tight trousers",
    "shoes-Leather": "A pedestrian wearing leather shoes",
    "shoes-Boots": "A pedestrian wearing boots",
    "shoes-Cloth": "A pedestrian wearing cloth shoes",
    "shoes-Casual": "A pedestrian wearing casual shoes",
    "action-Calling": "A pedestrian who is making a phone call",
    "action-Talking": "A pedestrian who is talking",
    "action-Gathering": "A pedestrian who is gathering with others",
    "action-Holding": "A pedestrian who is holding something",
    "action-Pulling": "A pedestrian who is pulling something",
}


def _pick(source: Mapping[str, str], names: Sequence[str], extra: Mapping[str, str]) -> dict[str, str]:
    """Build a table in the given raw order from shared entries plus dataset-only ones."""
    return {name: extra[name] if name in extra else source[name] for name in names}


_RAPV1_ORDER = (
    "Female", "AgeLess16", "Age17-30", "Age31-45", "BodyFat", "BodyNormal", "BodyThin",
    "Customer", "Clerk", "hs-BaldHead", "hs-LongHair", "hs-BlackHair", "hs-Hat",
    "hs-Glasses", "hs-Muffler", "ub-Shirt", "ub-Sweater", "ub-Vest", "ub-TShirt",
    "ub-Cotton", "ub-Jacket", "ub-SuitUp", "ub-Tight", "ub-ShortSleeve", "lb-LongTrousers",
    "lb-Skirt", "lb-ShortSkirt", "lb-Dress", "lb-Jeans", "lb-TightTrousers", "shoes-Leather",
    "shoes-Sport", "shoes-Boots", "shoes-Cloth", "shoes-Casual", "attach-Backpack",
    "attach-SingleShoulderBag", "attach-HandBag", "attach-Box", "attach-PlasticBag",
    "attach-PaperBag", "attach-HandTrunk", "attach-Other", "action-Calling",
    "action-Talking", "action-Gathering", "action-Holding", "action-Pusing",
    "action-Pulling", "action-CarrybyArm", "action-CarrybyHand",
)  # fmt: skip

_RAPV1 = _pick(
    _RAP_COMMON,
    _RAPV1_ORDER,
    {
        "Clerk": "A pedestrian who is a clerk",
        "shoes-Sport": "A pedestrian wearing sports shoes",
        "attach-Backpack": "A pedestrian carrying a backpack",
        "attach-SingleShoulderBag": "A pedestrian carrying a shoulder bag",
        "attach-HandBag": "A pedestrian carrying a handbag",
        "attach-Box": "A pedestrian carrying a box",
        "attach-PlasticBag": "A pedestrian carrying a plastic bag",
        "attach-PaperBag": "A pedestrian carrying a paper bag",
        "attach-HandTrunk": "A pedestrian with a hand trunk",
        "attach-Other": "A pedestrian carrying other things",
        "action-Pusing": "A pedestrian who is pushing something",
        "action-CarrybyArm": "A pedestrian who is carrying something in the arms",
        "action-CarrybyHand": "A pedestrian who is carrying something in the hand",
    },
)

_RAPV2_ORDER = (
    "Female", "AgeLess16", "Age17-30", "Age31-45", "Age46-60", "BodyFat", "BodyNormal",
    "BodyThin", "Customer", "Employee", "hs-BaldHead", "hs-LongHair", "hs-BlackHair",
    "hs-Hat", "hs-Glasses", "ub-Shirt", "ub-Sweater", "ub-Vest", "ub-TShirt", "ub-Cotton",
    "ub-Jacket", "ub-SuitUp", "ub-Tight", "ub-ShortSleeve", "ub-Others", "lb-LongTrousers",
    "lb-Skirt", "lb-ShortSkirt", "lb-Dress", "lb-Jeans", "lb-TightTrousers", "shoes-Leather",
    "shoes-Sports", "shoes-Boots", "shoes-Cloth", "shoes-Casual", "shoes-Other",
    "attachment-Backpack", "attachment-ShoulderBag", "attachment-HandBag", "attachment-Box",
    "attachment-PlasticBag", "attachment-PaperBag", "attachment-HandTrunk",
    "attachment-Other", "action-Calling", "action-Talking", "action-Gathering",
    "action-Holding", "action-Pushing", "action-Pulling", "action-CarryingByArm",
    "action-CarryingByHand", "action-Other",
)  # fmt: skip

_RAPV2 = _pick(
    _RAP_COMMON,
    _RAPV2_ORDER,
    {
        "Employee": "A pedestrian who is an employee",
        "ub-Others": "A pedestrian wearing other upper clothing",
        "shoes-Sports": "A pedestrian wearing sports shoes",
        "shoes-Other": "A pedestrian wearing other kinds of shoes",
        "attachment-Backpack": "A pedestrian carrying a backpack",
        "attachment-ShoulderBag": "A pedestrian carrying a shoulder bag",
        "attachment-HandBag": "A pedestrian carrying a handbag",
        "attachment-Box": "A pedestrian carrying a box",
        "attachment-PlasticBag": "A pedestrian carrying a plastic bag",
        "attachment-PaperBag": "A pedestrian carrying a paper bag",
        "attachment-HandTrunk": "A pedestrian with a hand trunk",
        "attachment-Other": "A pedestrian carrying other things",
        "action-Pushing": "A pedestrian who is pushing something",
        "action-CarryingByArm": "A pedestrian who is carrying something in the arms",
        "action-CarryingByHand": "A pedestrian who is carrying something in the hand",
        "action-Other": "A pedestrian who is doing some other action",
    },
)

#: dataset key -> {raw attribute name: sentence}, each in the dataset's raw order.
ATTRIBUTE_SENTENCES: dict[str, dict[str, str]] = {
    "pa100k": _PA100K,
    "peta": _PETA,
    "rapv1": _RAPV1,
    "rapv2": _RAPV2,
}

#: dataset key -> raw attribute names in the dataset's raw (annotation file) order.
DATASET_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    key: tuple(table) for key, table in ATTRIBUTE_SENTENCES.items()
}

# Accepted spellings of dataset names, after lower-casing and dropping "-", "_", " ".
_DATASET_ALIASES = {
    "pa100k": "pa100k",
    "peta": "peta",
    "petazs": "peta",
    "rap": "rapv1",
    "rap1": "rapv1",
    "rapv1": "rapv1",
    "rap2": "rapv2",
    "rapv2": "rapv2",
    "rapzs": "rapv2",
}


def normalize_dataset_name(dataset: str) -> str:
    """Map a dataset name to its table key (``"PA-100K"`` -> ``"pa100k"``, ``"RAP"`` -> ``"rapv1"``).

    Case, ``-``, ``_`` and spaces are ignored. Raises ``ValueError`` for a name without
    a table, listing the known keys.
    """
    key = re.sub(r"[\s_\-]+", "", str(dataset)).lower()
    if key not in _DATASET_ALIASES:
        raise ValueError(
            f"no attribute-sentence table for dataset {dataset!r}; known: "
            f"{sorted(ATTRIBUTE_SENTENCES)} (aliases: {sorted(_DATASET_ALIASES)}). "
            "Pass dataset=None to look the names up in every table, or pass your own sentences."
        )
    return _DATASET_ALIASES[key]


# --------------------------------------------------------------------------------------
# Template mechanism
# --------------------------------------------------------------------------------------

# Word splitting: acronym before a capitalised word ("TShirt" -> "T", "Shirt"),
# capitalised or lower-case words, all-caps runs, digit runs.
_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

# (prefix, pattern), longest/most specific first. "{}" receives the remaining words.
# Prefixes ending in a letter must be followed by an upper-case letter (camelCase) or a
# separator, so that e.g. "Hat" does not match "hair" and "Backpack" does not match "Back".
_PREFIX_PATTERNS: tuple[tuple[str, str], ...] = (
    ("attachment-", "A pedestrian carrying {}"),
    ("attach-", "A pedestrian carrying {}"),
    ("carrying", "A pedestrian carrying {}"),
    ("action-", "A pedestrian who is {}"),
    ("accessory", "A pedestrian wearing {}"),
    ("hs-", "A pedestrian with {}"),
    ("hair", "A pedestrian whose hair is {}"),
    ("upperBody", "A pedestrian with {} on the upper body"),
    ("ub-", "A pedestrian with {} on the upper body"),
    ("up-", "A pedestrian with {} on the upper body"),
    ("lowerBody", "A pedestrian with {} on the lower body"),
    ("lb-", "A pedestrian with {} on the lower body"),
    ("low-", "A pedestrian with {} on the lower body"),
    ("footwear", "A pedestrian with {} footwear"),
    ("shoes-", "A pedestrian with {} footwear"),
    ("personal", "A pedestrian who is {}"),
)

_AGE_BETWEEN_RE = re.compile(r"^(?:personal)?age[\s_\-]*(\d+)\s*(?:-|_|to)\s*(\d+)$", re.IGNORECASE)
_AGE_UNDER_RE = re.compile(
    r"^(?:personal)?(?:age)?[\s_\-]*(?:less|under|below|lessthan)[\s_\-]*(\d+)$", re.IGNORECASE
)
_AGE_OVER_RE = re.compile(
    r"^(?:personal)?(?:age)?[\s_\-]*(?:over|larger|above|older|morethan)[\s_\-]*(\d+)$",
    re.IGNORECASE,
)
_GENDER_RE = re.compile(r"^(?:personal)?(female|male)$", re.IGNORECASE)


def split_words(text: str) -> list[str]:
    """Split a raw attribute name into lower-case words.

    Splits at camelCase boundaries, digits and any non-alphanumeric character; ``&``
    becomes "and". ``"Skirt&Dress"`` -> ``["skirt", "and", "dress"]``,
    ``"ub-TShirt"`` -> ``["ub", "t", "shirt"]``.
    """
    text = text.replace("&", " and ")
    return [w.lower() for w in _WORD_RE.findall(text)]


def _strip_prefix(name: str, prefix: str) -> str | None:
    """Rest of ``name`` after ``prefix`` if it starts a new word there, else ``None``."""
    if not name.startswith(prefix) or len(name) == len(prefix):
        return None
    rest = name[len(prefix) :]
    if prefix[-1].isalpha() and not (rest[0].isupper() or rest[0].isdigit() or rest[0] in "-_ "):
        return None
    return rest


def template_sentence(name: str) -> str:
    """Expand one raw attribute name with the template mechanism (no table lookup).

    Rules, first match wins:

    - age ranges: ``Age17-30`` / ``personalAge17-30`` -> "A pedestrian between 17 and 30
      years old"; ``AgeLess16`` / ``personalLess30`` -> "A pedestrian under N years old";
      ``AgeOver60`` / ``personalLarger60`` -> "A pedestrian over N years old";
    - gender: ``Female`` / ``personalMale`` -> "A female / male pedestrian";
    - a known prefix selects a pattern (``hs-`` -> "A pedestrian with {words}",
      ``hair`` -> "A pedestrian whose hair is {words}", ``ub-``/``upperBody`` -> "A
      pedestrian with {words} on the upper body", ``lb-``/``lowerBody`` -> "... on the
      lower body", ``shoes-``/``footwear`` -> "A pedestrian with {words} footwear",
      ``attach-``/``attachment-``/``carrying`` -> "A pedestrian carrying {words}",
      ``action-``/``personal`` -> "A pedestrian who is {words}", ``accessory`` -> "A
      pedestrian wearing {words}");
    - otherwise "A pedestrian with {words}".

    ``{words}`` is :func:`split_words` of the rest of the name, joined by spaces.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"attribute names must be non-empty strings, got {name!r}")
    name = name.strip()
    if m := _AGE_BETWEEN_RE.match(name):
        return f"A pedestrian between {m.group(1)} and {m.group(2)} years old"
    if m := _AGE_UNDER_RE.match(name):
        return f"A pedestrian under {m.group(1)} years old"
    if m := _AGE_OVER_RE.match(name):
        return f"A pedestrian over {m.group(1)} years old"
    if m := _GENDER_RE.match(name):
        return f"A {m.group(1).lower()} pedestrian"
    for prefix, pattern in _PREFIX_PATTERNS:
        rest = _strip_prefix(name, prefix)
        if rest is not None:
            words = split_words(rest)
            if words:
                return pattern.format(" ".join(words))
    words = split_words(name) or [name]
    return f"A pedestrian with {' '.join(words)}"


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        raise ValueError("names must be a sequence of attribute names, not a single string")
    names = list(names)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"attribute name #{i} must be a non-empty string, got {name!r}")
    return names


def expand_attributes(names: Sequence[str], dataset: str | None = None) -> list[str]:
    """Return one sentence per raw attribute name, in the order of ``names``.

    Args:
        names: raw attribute names, e.g. ``["Female", "AgeOver60", ...]``.
        dataset: table to look the names up in (``"pa100k"``, ``"peta"``, ``"rapv1"``,
            ``"rapv2"`` or an alias such as ``"RAP"``, ``"PETA-ZS"``, ``"rap_zs"``). With
            ``None`` a name is looked up in every table (shared names carry the same
            sentence in every table, so the result does not depend on the search order).

    Names found in no table are expanded by :func:`template_sentence`, and one
    ``UserWarning`` lists all of them, so a typo or a new dataset is visible.
    """
    names = _check_names(names)
    key = None if dataset is None else normalize_dataset_name(dataset)
    tables = list(ATTRIBUTE_SENTENCES.values()) if key is None else [ATTRIBUTE_SENTENCES[key]]

    sentences: list[str] = []
    unknown: list[str] = []
    for name in names:
        stripped = name.strip()
        found = next((table[stripped] for table in tables if stripped in table), None)
        if found is None:
            unknown.append(name)
            found = template_sentence(stripped)
        sentences.append(found)

    if unknown:
        where = "any table" if key is None else f"the {key!r} table"
        warnings.warn(
            f"{len(unknown)} attribute name(s) not found in {where}, expanded with the "
            f"generic template: {unknown}. Pass your own sentences to override.",
            UserWarning,
            stacklevel=2,
        )
    return sentences


def resolve_sentences(
    names: Sequence[str],
    sentences: Sequence[str] | None = None,
    dataset: str | None = None,
) -> list[str]:
    """The sentences to encode: the user's own if given (validated), else the expansion.

    Raises ``ValueError`` when ``sentences`` is a single string, has a different length
    from ``names``, or holds an entry that is not a non-empty string (the message names
    the offending index and attribute).
    """
    names = _check_names(names)
    if sentences is None:
        return expand_attributes(names, dataset=dataset)
    if isinstance(sentences, str):
        raise ValueError("sentences must be a sequence with one sentence per attribute, not a single string")
    sentences = list(sentences)
    if len(sentences) != len(names):
        raise ValueError(
            f"got {len(sentences)} sentences for {len(names)} attributes; give exactly one "
            "sentence per attribute, in the same order"
        )
    for i, (name, sentence) in enumerate(zip(names, sentences)):
        if not isinstance(sentence, str) or not sentence.strip():
            raise ValueError(
                f"sentence #{i} (attribute {name!r}) must be a non-empty string, got {sentence!r}"
            )
    return sentences
