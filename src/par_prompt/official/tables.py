"""The attribute sentences the official PromptPAR checkpoints were trained with.

The official code (Event-AHU/OpenPAR, folder ``PromptPAR/``) reads each data set's
sentences from the ``attributes`` of a ``pad.pkl`` file written by a preprocessing
script (``dataset/preprocess/*_pad.py``). Those sentences, in that order, are what the
checkpoints' text features were computed from, so an imported model must use exactly
them: each table below copies one script's ``attr_words`` string for string (odd
spellings and spacing included) and puts beside each sentence the short attribute name
that ``par-prompt convert`` gives the same label column.

The order is the order of the checkpoint's heads. For PETA and RAPv2 it is the body-part
grouping of the official scripts (their ``group_order``), not the order of the
annotation files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from .errors import OfficialCheckpointError


@dataclass(frozen=True)
class SentenceTable:
    """One data set's attributes and sentences, in the order of the official heads."""

    key: str
    title: str
    script: str
    attributes: tuple[str, ...]
    sentences: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.attributes)


def _table(key: str, title: str, script: str, pairs: Sequence[tuple[str, str]]) -> SentenceTable:
    return SentenceTable(key, title, script, tuple(name for name, _ in pairs), tuple(s for _, s in pairs))


_PA100K = (
    ("Female", "A female pedestrian"),
    ("AgeOver60", "A pedestrian over the age of 60"),
    ("Age18-60", "A pedestrian between the ages of 18 and 60"),
    ("AgeLess18", "A pedestrian under the age of 18"),
    ("Front", "A pedestrian seen from the front"),
    ("Side", "A pedestrian seen from the side"),
    ("Back", "A pedestrian seen from the back"),
    ("Hat", "A pedestrian wearing a hat"),
    ("Glasses", "A pedestrian wearing glasses"),
    ("HandBag", "A pedestrian with a handbag"),
    ("ShoulderBag", "A pedestrian with a shoulder bag"),
    ("Backpack", "A pedestrian with a backpack"),
    ("HoldObjectsInFront", "A pedestrian holding objects in front"),
    ("ShortSleeve", "A pedestrian in short-sleeved upper wear"),
    ("LongSleeve", "A pedestrian in long-sleeved upper wear"),
    ("UpperStride", "A pedestrian in stride upper wear"),
    ("UpperLogo", "A pedestrian in upper wear with a logo"),
    ("UpperPlaid", "A pedestrian in plaid upper wear"),
    ("UpperSplice", "A pedestrian in splice upper wear"),
    ("LowerStripe", "A pedestrian in striped lower wear"),
    ("LowerPattern", "A pedestrian in patterned lower wear"),
    ("LongCoat", "A pedestrian in a long coat"),
    ("Trousers", "A pedestrian in trousers"),
    ("Shorts", "A pedestrian in shorts"),
    ("Skirt&Dress", "A pedestrian in skirts and dresses"),
    ("boots", "A pedestrian wearing boots"),
)

# peta_pad.py and petazspad.py hold the same 35 sentences.
_PETA = (
    ("accessoryHat", "A pedestrian wearing a hat"),
    ("accessoryMuffler", "A pedestrian wearing a muffler"),
    ("accessoryNothing", "A pedestrian with no headwear"),
    ("accessorySunglasses", "A pedestrian wearing sunglasses"),
    ("hairLong", "A pedestrian with long hair"),
    ("upperBodyCasual", "A pedestrian in casual upper wear"),
    ("upperBodyFormal", "A pedestrian in formal upper wear"),
    ("upperBodyJacket", "A pedestrian in a jacket"),
    ("upperBodyLogo", "A pedestrian in upper wear with a logo"),
    ("upperBodyPlaid", "A pedestrian in plaid upper wear"),
    ("upperBodyShortSleeve", "A pedestrian in a short-sleeved top"),
    ("upperBodyThinStripes", "A pedestrian in upper wear with thin stripes"),
    ("upperBodyTshirt", "A pedestrian in a t-shirt"),
    ("upperBodyOther", "A pedestrian in other upper wear"),
    ("upperBodyVNeck", "A pedestrian in upper wear with a V-neck"),
    ("lowerBodyCasual", "A pedestrian in casual lower wear"),
    ("lowerBodyFormal", "A pedestrian in formal lower wear"),
    ("lowerBodyJeans", "A pedestrian in jeans"),
    ("lowerBodyShorts", "A pedestrian in shorts"),
    ("lowerBodyShortSkirt", "A pedestrian in a short skirt"),
    ("lowerBodyTrousers", "A pedestrian in trousers"),
    ("footwearLeatherShoes", "A pedestrian in leather shoes"),
    ("footwearSandals", "A pedestrian in sandals"),
    ("footwearShoes", "A pedestrian in other types of shoes"),
    ("footwearSneaker", "A pedestrian in sneakers"),
    ("carryingBackpack", "A pedestrian with a backpack"),
    ("carryingOther", "A pedestrian with other types of attachments"),
    ("carryingMessengerBag", "A pedestrian with a messenger bag"),
    ("carryingNothing", "A pedestrian with no attachments"),
    ("carryingPlasticBags", "A pedestrian with plastic bags"),
    ("personalLess30", "A pedestrian under the age of 30"),
    ("personalLess45", "A pedestrian between the ages of 30 and 45"),
    ("personalLess60", "A pedestrian between the ages of 45 and 60"),
    ("personalLarger60", "A pedestrian over the age of 60"),
    ("personalMale", "A male pedestrian"),
)

# RAPv1: the official loader reads RAPV1/pad.pkl, but rap1_pad.py writes expand_pad.pkl
# and no script writes RAPV1/pad.pkl. The table follows rap1_pad.py, whose `attributes`
# are its `attr_words`: short phrases, not the sentences of its unused templates.
_RAPV1 = (
    ("Female", "female"),
    ("AgeLess16", "age less 16"),
    ("Age17-30", "age 17 30"),
    ("Age31-45", "age 31 45"),
    ("BodyFat", "body fat"),
    ("BodyNormal", "body normal"),
    ("BodyThin", "body thin"),
    ("Customer", "customer"),
    ("Clerk", "clerk"),
    ("hs-BaldHead", "head bald head"),
    ("hs-LongHair", "head long hair"),
    ("hs-BlackHair", "head black hair"),
    ("hs-Hat", "head hat"),
    ("hs-Glasses", "head glasses"),
    ("hs-Muffler", "head muffler"),
    ("ub-Shirt", "upper shirt"),
    ("ub-Sweater", "upper sweater"),
    ("ub-Vest", "upper vest"),
    ("ub-TShirt", "upper t-shirt"),
    ("ub-Cotton", "upper cotton"),
    ("ub-Jacket", "upper jacket"),
    ("ub-SuitUp", "upper suit up"),
    ("ub-Tight", "upper tight"),
    ("ub-ShortSleeve", "upper short sleeve"),
    ("lb-LongTrousers", "lower long trousers"),
    ("lb-Skirt", "lower skirt"),
    ("lb-ShortSkirt", "lower short skirt"),
    ("lb-Dress", "lower dress"),
    ("lb-Jeans", "lower jeans"),
    ("lb-TightTrousers", "lower tight trousers"),
    ("shoes-Leather", "shoes leather"),
    ("shoes-Sport", "shoes sport"),
    ("shoes-Boots", "shoes boots"),
    ("shoes-Cloth", "shoes cloth"),
    ("shoes-Casual", "shoes casual"),
    ("attach-Backpack", "attach backpack"),
    ("attach-SingleShoulderBag", "attach shoulder bag"),
    ("attach-HandBag", "attach hand bag"),
    ("attach-Box", "attach box"),
    ("attach-PlasticBag", "attach plastic bag"),
    ("attach-PaperBag", "attach paper bag"),
    ("attach-HandTrunk", "attach hand trunk"),
    ("attach-Other", "attach other"),
    ("action-Calling", "action calling"),
    ("action-Talking", "action talking"),
    ("action-Gathering", "action gathering"),
    ("action-Holding", "action holding"),
    ("action-Pusing", "action pushing"),
    ("action-Pulling", "action pulling"),
    ("action-CarrybyArm", "action carry arm"),
    ("action-CarrybyHand", "action carry hand"),
)

# rap2_pad.py: RAPv2's 54 evaluated attributes in the script's group order (head and
# shoulders, upper body, lower body, shoes, attachments, age, gender, body, role, action).
_RAPV2 = (
    ("hs-BaldHead", "A pedestrian with a bald head"),
    ("hs-LongHair", "A pedestrian with long hair"),
    ("hs-BlackHair", "A pedestrian with black hair"),
    ("hs-Hat", "A pedestrian wearing a hat"),
    ("hs-Glasses", "A pedestrian wearing glasses"),
    ("ub-Shirt", "A pedestrian in a shirt"),
    ("ub-Sweater", "A pedestrian in a sweater"),
    ("ub-Vest", "A pedestrian in a vest"),
    ("ub-TShirt", "A pedestrian in a t-shirt"),
    ("ub-Cotton", "A pedestrian in cotton clothing"),
    ("ub-Jacket", "A pedestrian in a jacket"),
    ("ub-SuitUp", "A pedestrian dressed in a suit"),
    ("ub-Tight", "A pedestrian in tight-fitting clothes"),
    ("ub-ShortSleeve", "A pedestrian in a short-sleeved top"),
    ("ub-Others", "A pedestrian with other upper wear"),
    ("lb-LongTrousers", "A pedestrian in long trousers"),
    ("lb-Skirt", "A pedestrian in a skirt"),
    ("lb-ShortSkirt", "A pedestrian in a short skirt"),
    ("lb-Dress", "A pedestrian in a dress"),
    ("lb-Jeans", "A pedestrian in jeans"),
    ("lb-TightTrousers", "A pedestrian in tight trousers"),
    ("shoes-Leather", "A pedestrian in leather shoes"),
    ("shoes-Sports", "A pedestrian in sports shoes"),
    ("shoes-Boots", "A pedestrian wearing boots"),
    ("shoes-Cloth", "A pedestrian in cloth shoes"),
    ("shoes-Casual", "A pedestrian in casual shoes"),
    ("shoes-Other", "A pedestrian in other footwear"),
    ("attachment-Backpack", "A pedestrian carrying a backpack"),
    ("attachment-ShoulderBag", "A pedestrian with a shoulder bag"),
    ("attachment-HandBag", "A pedestrian with a handbag"),
    ("attachment-Box", "A pedestrian with a box"),
    ("attachment-PlasticBag", "A pedestrian with a plastic bag"),
    ("attachment-PaperBag", "A pedestrian with a paper bag"),
    ("attachment-HandTrunk", "A pedestrian carrying a hand trunk"),
    ("attachment-Other", "A pedestrian with other attachments"),
    ("AgeLess16", "A pedestrian under the age of 16"),
    ("Age17-30", "A pedestrian between the ages of 17 and 30"),
    ("Age31-45", "A pedestrian between the ages of 31 and 45"),
    ("Age46-60", "A pedestrian between the ages of 46 and 60"),
    ("Female", "A female pedestrian"),
    ("BodyFat", "A pedestrian with a larger body build"),
    ("BodyNormal", "A pedestrian with a normal body build"),
    ("BodyThin", "A pedestrian with a slender body build"),
    ("Customer", "A customer"),
    ("Employee", "An employee"),
    ("action-Calling", "A pedestrian making a call"),
    ("action-Talking", "A pedestrian engaged in conversation"),
    ("action-Gathering", "A pedestrian gathered with others"),
    ("action-Holding", "A pedestrian holding something"),
    ("action-Pushing", "A pedestrian pushing something"),
    ("action-Pulling", "A pedestrian pulling something"),
    ("action-CarryingByArm", "A pedestrian carrying something in their arm"),
    ("action-CarryingByHand", "A pedestrian carrying something in their hand"),
    ("action-Other", "A pedestrian engaged in other actions"),
)

# rapzspad.py: RAPv2's table without Age46-60 (the zero-shot protocol's 53 attributes).
_RAP_ZS = tuple(pair for pair in _RAPV2 if pair[0] != "Age46-60")

# wider_pad.py, in WIDER Attribute's own order. The stray spaces, the missing articles and
# "plaid" for the attribute WIDER calls "stripe" are the script's.
_WIDER = (
    ("Male", "A pedestrian whose gender is male"),
    ("longHair", "A pedestrian whose hair is long"),
    ("sunglass", "pedestrian wearing sunglasses"),
    ("Hat", " pedestrian wearing a hat"),
    ("Tshiirt", "A pedestrian whose upper is t-shirt"),
    ("longSleeve", "A pedestrian whose upper is long sleeve"),
    ("formal", "A pedestrian whose upper is formal suits"),
    ("shorts", "A pedestrian whose lower is shorts"),
    ("jeans", "A pedestrian whose lower is jeans"),
    ("longPants", "A pedestrian whose lower is long pants"),
    ("skirt", "A pedestrian whose lower is skirt"),
    ("faceMask", "A pedestrian who is face mask"),
    ("logo", "A pedestrian who is logo"),
    ("stripe", "A pedestrian who is plaid"),
)

#: key -> the sentence table of one official data set.
OFFICIAL_TABLES: dict[str, SentenceTable] = {
    table.key: table
    for table in (
        _table("pa100k", "PA100K", "pa100k_pad.py", _PA100K),
        _table("peta", "PETA", "peta_pad.py", _PETA),
        _table("peta_zs", "PETA-ZS", "petazspad.py", _PETA),
        _table("rapv1", "RAPv1", "rap1_pad.py", _RAPV1),
        _table("rapv2", "RAPv2", "rap2_pad.py", _RAPV2),
        _table("rap_zs", "RAP-ZS", "rapzspad.py", _RAP_ZS),
        _table("wider", "WIDER", "wider_pad.py", _WIDER),
    )
}

# Spellings accepted for --dataset, after lower-casing and dropping "-", "_" and spaces
# (the official code's own names included: PA100k, RAPV1, RAPV2, PETAzs, RAPzs, WIDER).
_ALIASES: dict[str, tuple[str, ...]] = {
    "pa100k": ("pa100k",),
    "peta": ("peta",),
    "petazs": ("peta_zs",),
    "rapv1": ("rapv1",),
    "rap1": ("rapv1",),
    "rapv2": ("rapv2",),
    "rap2": ("rapv2",),
    "rap": ("rapv1", "rapv2"),  # the checkpoint list says "RAP"; the head count decides
    "rapzs": ("rap_zs",),
    "wider": ("wider",),
}


def _candidates(dataset: str) -> tuple[str, ...]:
    key = re.sub(r"[\s_\-]+", "", str(dataset)).lower()
    if key not in _ALIASES:
        raise OfficialCheckpointError(
            f"unknown dataset {dataset!r}; known: {', '.join(OFFICIAL_TABLES)}. For a checkpoint trained on other "
            "data, pass --attributes FILE with its attribute names and sentences."
        )
    return _ALIASES[key]


def _by_count(num_heads: int) -> list[str]:
    return [key for key, table in OFFICIAL_TABLES.items() if len(table) == num_heads]


def find_table(dataset: Optional[str], num_heads: int) -> SentenceTable:
    """The table of ``dataset`` (any accepted spelling, case-insensitive) for a checkpoint
    with ``num_heads`` heads; without ``dataset``, the one table with that many attributes.

    Raises :class:`OfficialCheckpointError` when the name is unknown, when its table has
    another number of attributes, or when the head count matches no table or several.
    """
    matching = _by_count(num_heads)
    if dataset is None:
        if len(matching) == 1:
            return OFFICIAL_TABLES[matching[0]]
        if not matching:
            raise OfficialCheckpointError(
                f"the checkpoint has {num_heads} attribute heads, which matches no official data set "
                f"({_counts_text()}); pass --attributes FILE with one name and sentence per head."
            )
        raise OfficialCheckpointError(
            f"the checkpoint has {num_heads} attribute heads, as {' and '.join(matching)} have; pass --dataset "
            f"{' or --dataset '.join(matching)}."
        )
    candidates = [key for key in _candidates(dataset) if len(OFFICIAL_TABLES[key]) == num_heads]
    if len(candidates) == 1:
        return OFFICIAL_TABLES[candidates[0]]
    expected = " or ".join(f"{len(OFFICIAL_TABLES[key])} ({key})" for key in _candidates(dataset))
    hint = f"; {num_heads} heads match {', '.join(matching)}" if matching else ""
    raise OfficialCheckpointError(
        f"the checkpoint has {num_heads} attribute heads but {dataset} has {expected}{hint}. Check --dataset, or "
        "pass --attributes FILE with one name and sentence per head."
    )


def _counts_text() -> str:
    return ", ".join(f"{key} {len(table)}" for key, table in OFFICIAL_TABLES.items())


def read_attribute_file(path: Union[str, Path]) -> tuple[list[str], list[str]]:
    """Attribute names and sentences from a text file, one head per line, in head order.

    Format (UTF-8): ``NAME<TAB>SENTENCE`` on each line; empty lines and lines starting
    with ``#`` are skipped. Example::

        # name<TAB>sentence, in the order of the checkpoint's heads
        Female<TAB>A female pedestrian
        Hat<TAB>A pedestrian wearing a hat
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first name
    except UnicodeDecodeError as error:
        raise OfficialCheckpointError(f"attribute file {path} is not UTF-8 text ({error}).") from error
    except OSError as error:
        raise OfficialCheckpointError(f"cannot read the attribute file {path}: {error.strerror or error}.") from error
    names, sentences = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # \n only: an editor's line numbers
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise OfficialCheckpointError(
                f"{path} line {number}: expected NAME<TAB>SENTENCE (one tab, both parts non-empty), got {line!r}."
            )
        names.append(parts[0].strip())
        sentences.append(parts[1].strip())
    if not names:
        raise OfficialCheckpointError(f"attribute file {path} holds no NAME<TAB>SENTENCE line.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise OfficialCheckpointError(f"attribute file {path} repeats the attribute name(s) {repeated}.")
    return names, sentences
