"""Tiny random-init CLIP and ViT backbones, written to disk like the published ones.

PromptPAR runs on a frozen CLIP (``openai/clip-vit-large-patch14`` in the paper) and
borrows the last block and final layer norm of a ViT (``google/vit-base-patch16-224``) as
its fusion module. Where those cannot be downloaded (the demo, tests, benchmarks), this
module writes miniature stand-ins with ``save_pretrained``; the code then loads them
through the real ``from_pretrained`` paths, as it would load the published checkpoints.

* :func:`write_tiny_backbones` writes ``<dir>/clip`` (``CLIPModel`` + CLIP BPE
  tokenizer + ``CLIPImageProcessor``/``CLIPProcessor``) and ``<dir>/vit``
  (``ViTModel``) and returns their paths as :class:`TinyBackbones`.
* :func:`tiny_clip_tokenizer`, :func:`tiny_clip_config` and :func:`tiny_vit_config`
  build the same objects in memory, with no files.

The tokenizer is a genuine CLIP byte-level BPE tokenizer whose merges are learnt by the
``tokenizers`` library's BPE trainer from :data:`PAR_WORDS` (plus any ``extra_words``),
until every one of those words is a single token. Its vocabulary is laid out as CLIP's
49408-token one: the 256 byte-level characters, the same with the word-final ``</w>``,
one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>`` as the last two
ids. Any other word still tokenizes, in shorter pieces and at worst single bytes; like
real CLIP, numbers are split into single digits ("16" -> ``1</w> 6</w>``).

The architecture numbers of the full-size backbones are in :mod:`par_prompt.backbone_sizes`.
Nothing here performs I/O at import time or contacts the Hugging Face Hub.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .backbone_sizes import CLIP_CONTEXT_LENGTH, clip_config_from_sizes, vit_config_from_sizes
from .quiet import quiet_libraries

__all__ = [
    "PAR_WORDS",
    "TinyBackbones",
    "tiny_clip_config",
    "tiny_clip_tokenizer",
    "tiny_vit_config",
    "write_tiny_backbones",
]

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# ---------------------------------------------------------------------------
# Built-in vocabulary: words that appear in pedestrian-attribute sentences
# (PETA, PA100k, RAPv1/v2 attribute names and PromptPAR-style prompts).
# Letters only: each must be one pre-token of CLIP's tokenizer.
# ---------------------------------------------------------------------------

#: Words that the tiny tokenizer encodes as a single token each.
PAR_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        """
        a an the this that these those there here it its he she his her they their
        is are was were be being been has have having does do with without of in on
        at by from to for and or but not no than between over under above below
        near about into onto as who whose which what where while one some any other
        others another very more less most least both each either only also same
        different than then like such

        pedestrian pedestrians person people man men woman women male female boy
        girl child children kid adult adults teenager elderly senior old young
        middle aged age ages years year customer clerk gender

        front back side view seen facing toward towards away left right behind

        body upper lower head hair face hand hands arm arms shoulder shoulders leg
        legs foot feet neck waist chest

        long short bald black blond blonde dark light curly straight ponytail
        hairstyle

        hat cap helmet glasses sunglasses eyeglasses muffler scarf mask accessory
        accessories hood headphones umbrella watch

        bag bags backpack handbag messenger plastic paper box trunk suitcase
        luggage carrying carries carry carried holding holds hold held objects
        object thing things something nothing single attachment attachments

        shirt tshirt sweater vest cotton jacket coat suit tight sleeve sleeves
        sleeveless blouse hoodie uniform top tops collar

        trousers pants jeans shorts skirt dress dresses casual formal

        shoes shoe boots boot sneakers sneaker sandals sandal leather sport sports
        cloth footwear heels slippers

        logo plaid stripes stripe striped splice pattern patterns patterned stride
        lattice printed plain solid

        black white red blue green yellow gray grey brown pink purple orange
        colorful colored color colour

        fat thin normal slim heavy tall

        wearing wears wear worn dressed calling talking gathering pushing pulling
        walking standing running riding phone pose posture

        clothing clothes clothed outfit garment

        picture image photo photograph appears appear looks look action doing
        making call build kinds colors employee padded spliced neckline

        zero one two three four five six seven eight nine ten sixteen seventeen
        eighteen thirty forty fifty sixty
        """.split()
    )
)

# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _clip_bpe(extra_words: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Vocabulary (in id order) and merges learnt from :data:`PAR_WORDS` + ``extra_words``.

    The words go through CLIP's own normalizer and pre-tokenizer (so ``"T-shirt"`` gives
    ``t``, ``-`` and ``shirt``, in byte-level characters), then ``tokenizers``' BPE
    trainer merges pairs until every piece is one token. The trainer would number the
    word-final symbols (``a</w>``, ...) in hash order, which changes from one process
    to the next and with it the order of tied merges; so each word-final character is
    handed to it as a private-use character of its own, all 512 symbols are numbered
    before training (CLIP's order: byte characters by code point, then the word-final
    ones), and the results are written back with ``</w>``. Same words, same tokenizer.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # code-point order is CLIP's byte order
    final = {char: chr(0xE000 + i) for i, char in enumerate(alphabet)}
    written_back = {stand_in: char + END_OF_WORD for char, stand_in in final.items()}
    clip = CLIPTokenizer(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]).backend_tokenizer
    pieces = [
        piece[:-1] + final[piece[-1]]
        for word in (*PAR_WORDS, *extra_words)
        for piece, _ in clip.pre_tokenizer.pre_tokenize_str(clip.normalizer.normalize_str(word))
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=2 * len(alphabet) + sum(map(len, pieces)),  # more than the merges can fill: train to the end
        initial_alphabet=[*alphabet, *final.values()], show_progress=False,
    )
    bpe = Tokenizer(models.BPE())  # no pre-tokenizer: every piece is one word
    bpe.train_from_iterator(pieces, trainer)
    model = json.loads(bpe.to_str())["model"]

    def restore(token: str) -> str:
        return token[:-1] + written_back[token[-1]] if token[-1] in written_back else token

    vocab = [restore(token) for token, _ in sorted(model["vocab"].items(), key=lambda item: item[1])]
    merges = tuple((restore(left), restore(right)) for left, right in model["merges"])
    return (*vocab, BOS_TOKEN, EOS_TOKEN), merges


def tiny_clip_tokenizer(extra_words: Iterable[str] = ()):
    """An in-memory CLIP BPE tokenizer over :data:`PAR_WORDS` + ``extra_words``.

    Returns a ``transformers.CLIPTokenizer`` (the ``tokenizers``-backed class in
    transformers 5.x) with ``model_max_length`` 77 and
    ``pad_token == eos_token == "<|endoftext|>"`` as in the OpenAI checkpoints.
    ``<|startoftext|>`` and ``<|endoftext|>`` are the last two ids.
    """
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe(tuple(extra_words))
    # Note: in transformers 5.x, ``CLIPTokenizer(vocab_file=..., merges_file=...)``
    # silently ignores the files and builds a 3-token vocabulary; pass the
    # vocabulary and merges themselves (or use ``from_pretrained`` on a folder).
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(vocab)},
        merges=list(merges),
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        model_max_length=CLIP_CONTEXT_LENGTH,
    )


def _write_vocab_and_merges(directory: str, extra_words: tuple[str, ...]) -> None:
    """Write ``vocab.json`` and ``merges.txt`` in the format of OpenAI CLIP checkpoints."""
    vocab, merges = _clip_bpe(extra_words)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{left} {right}\n" for left, right in merges)


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------


def tiny_clip_config(
    *,
    image_size: int = 32,
    patch_size: int = 4,
    vision_width: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    text_width: int = 32,
    text_layers: int = 2,
    text_heads: int = 2,
    projection_dim: int = 32,
    vocab_size: int | None = None,
):
    """A tiny ``CLIPConfig`` (MLP ratio 4, context length 77); no files involved.

    ``vocab_size`` defaults to the size of :func:`tiny_clip_tokenizer` without
    extra words, so the config and that tokenizer agree on every id.
    """
    if vocab_size is None:
        vocab_size = len(_clip_bpe(())[0])
    return clip_config_from_sizes(
        {
            "projection_dim": projection_dim,
            "text": {
                "hidden_size": text_width,
                "intermediate_size": 4 * text_width,
                "num_hidden_layers": text_layers,
                "num_attention_heads": text_heads,
                "vocab_size": vocab_size,
                "max_position_embeddings": CLIP_CONTEXT_LENGTH,
            },
            "vision": {
                "hidden_size": vision_width,
                "intermediate_size": 4 * vision_width,
                "num_hidden_layers": vision_layers,
                "num_attention_heads": vision_heads,
                "patch_size": patch_size,
                "image_size": image_size,
            },
        }
    )


def tiny_vit_config(
    *,
    image_size: int = 32,
    patch_size: int = 4,
    fusion_width: int = 48,
    fusion_layers: int = 1,
    fusion_heads: int = 2,
):
    """A tiny ``ViTConfig`` (MLP ratio 4) in the ``google/vit-base-patch16-224`` layout."""
    return vit_config_from_sizes(
        {
            "hidden_size": fusion_width,
            "num_hidden_layers": fusion_layers,
            "num_attention_heads": fusion_heads,
            "intermediate_size": 4 * fusion_width,
            "image_size": image_size,
            "patch_size": patch_size,
        }
    )

# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------


# transformers 5.x renamed ViT's modules (``encoder.layer.N`` -> ``layers.N``,
# ``attention.attention.query`` -> ``attention.q_proj``, ...) and converts the
# old names when loading. These rules undo that, so the tiny ViT is written with
# exactly the key names of the ``google/vit-base-patch16-224`` safetensors file
# and loading it goes through the same conversion as the real checkpoint.
_VIT_HUB_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^vit\.layers\.(\d+)\.", r"vit.encoder.layer.\1."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
)


def _vit_hub_key(key: str) -> str:
    """Map a ``ViTForImageClassification`` state-dict key to its name on the Hub."""
    for pattern, replacement in _VIT_HUB_KEY_RULES:
        key = re.sub(pattern, replacement, key)
    return key


def _write_vit_hub_layout(model, directory: str) -> None:
    """Write ``model`` (a ``ViTForImageClassification``) as the Hub checkpoint lays it out.

    ``config.json`` via ``save_pretrained``; ``model.safetensors`` with the
    legacy key names (``vit.encoder.layer.N.attention.attention.query.weight``,
    ``vit.layernorm.weight``, ``classifier.weight``, ...), no pooler.
    """
    from safetensors.torch import save_file

    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(directory)
    state = {_vit_hub_key(k): v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})


@dataclass(frozen=True)
class TinyBackbones:
    """Paths written by :func:`write_tiny_backbones` (absolute)."""

    clip: str
    vit: str


def _clip_image_processor(image_size: int):
    """A ``CLIPImageProcessor`` with OpenAI's settings at ``image_size``.

    Uses the PIL backend class when available (transformers 5.x falls back to it
    anyway without torchvision, with a warning); both save
    ``"image_processor_type": "CLIPImageProcessor"``.
    """
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    try:
        from transformers import CLIPImageProcessorPil as processor_class
    except ImportError:  # a release without the PIL-backend class
        from transformers import CLIPImageProcessor as processor_class

    return processor_class(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )


def write_tiny_backbones(
    directory: str | os.PathLike[str],
    *,
    image_size: int = 32,
    patch_size: int = 4,
    vision_width: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    text_width: int = 32,
    text_layers: int = 2,
    text_heads: int = 2,
    projection_dim: int = 32,
    fusion_width: int = 48,
    fusion_layers: int = 1,
    fusion_heads: int = 2,
    seed: int = 0,
    extra_words: Iterable[str] = (),
) -> TinyBackbones:
    """Write a tiny random-init CLIP and ViT under ``directory``; return their paths.

    ``<directory>/clip`` holds a ``CLIPModel`` (``config.json``,
    ``model.safetensors``), the CLIP tokenizer (``tokenizer.json``,
    ``tokenizer_config.json`` and the OpenAI-style ``vocab.json`` /
    ``merges.txt``), a ``CLIPImageProcessor`` (``preprocessor_config.json``) and
    a ``CLIPProcessor`` (``processor_config.json``); ``CLIPModel``,
    ``AutoTokenizer``, ``AutoImageProcessor`` and ``AutoProcessor`` all load it
    with ``from_pretrained(path)`` offline.

    ``<directory>/vit`` mirrors ``google/vit-base-patch16-224``: a
    ``ViTForImageClassification`` (2 labels, no pooler) saved with the Hub's
    legacy key names, so ``ViTModel.from_pretrained(path,
    add_pooling_layer=False)`` strips the ``vit.`` prefix, renames the keys and
    ignores the classifier exactly as it does for the real checkpoint. Hidden
    size ``fusion_width``, ``fusion_layers`` layers, ``fusion_heads`` heads,
    the same ``image_size`` and ``patch_size``. (In transformers 5.x the blocks
    are ``ViTModel.layers``; older releases called them ``encoder.layer``.)

    Weights are a deterministic function of ``seed``; the caller's global torch
    RNG state is left untouched. Nothing is downloaded.
    """
    import torch
    from transformers import CLIPModel, CLIPProcessor, ViTForImageClassification

    extra_words = tuple(extra_words)
    clip_dir = os.path.abspath(os.path.join(os.fspath(directory), "clip"))
    vit_dir = os.path.abspath(os.path.join(os.fspath(directory), "vit"))
    os.makedirs(clip_dir, exist_ok=True)
    os.makedirs(vit_dir, exist_ok=True)

    tokenizer = tiny_clip_tokenizer(extra_words)
    clip_config = tiny_clip_config(
        image_size=image_size,
        patch_size=patch_size,
        vision_width=vision_width,
        vision_layers=vision_layers,
        vision_heads=vision_heads,
        text_width=text_width,
        text_layers=text_layers,
        text_heads=text_heads,
        projection_dim=projection_dim,
        vocab_size=len(tokenizer),
    )
    vit_config = tiny_vit_config(
        image_size=image_size,
        patch_size=patch_size,
        fusion_width=fusion_width,
        fusion_layers=fusion_layers,
        fusion_heads=fusion_heads,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = CLIPModel(clip_config).eval()
        vit = ViTForImageClassification(vit_config).eval()

    image_processor = _clip_image_processor(image_size)
    with quiet_libraries(bars=True):  # "Writing model shards" bars are noise here
        clip.save_pretrained(clip_dir)
    # transformers 5.x nests the image processor inside processor_config.json;
    # write preprocessor_config.json too, as the Hub checkpoints have it.
    image_processor.save_pretrained(clip_dir)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(clip_dir)
    _write_vocab_and_merges(clip_dir, extra_words)
    _write_vit_hub_layout(vit, vit_dir)
    return TinyBackbones(clip=clip_dir, vit=vit_dir)
