"""Official PromptPAR checkpoint -> par-prompt model, predicting what the official code predicts.

The official prediction pipeline differs from par-prompt's defaults (docs/method.md) in
four places, each recorded in the imported model so that it travels with it:

* images are resized to the square input without padding (bilinear), and normalised
  with mean = std = 0.5 -- the image processor's ``do_pad``, ``resample``,
  ``image_mean`` and ``image_std`` (:func:`official_processor`);
* the visual tokens skip CLIP's post-LayerNorm -- ``config.visual_post_layernorm``;
* an attribute is predicted above 0.45 -- ``config.threshold``;
* the text prompts cannot reach the sentence features (see :mod:`.keymap`), so the
  model has none -- ``config.text_prompts = 0``.

The fusion layers are timm ViT-B/16 blocks with LayerNorm eps 1e-6, taken from the
checkpoint (``config.fusion_config``). Where the weights came from is recorded in
``config.imported_from`` and in the model card.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from ..saved_files import CLIP_STATE_PREFIX
from .checkpoint import OfficialCheckpoint, read_checkpoint
from .errors import OfficialCheckpointError
from .keymap import OFFICIAL_OVERLAP_ROWS, ConvertedWeights, OfficialLayout, convert, read_layout
from .tables import SentenceTable, find_table
from .tokenizer import DEFAULT_CLIP_TOKENIZER, load_clip_tokenizer

#: The official scripts' threshold (test_in_custom.py and the metric function).
OFFICIAL_THRESHOLD = 0.45
OFFICIAL_IMAGE_MEAN = OFFICIAL_IMAGE_STD = (0.5, 0.5, 0.5)
BILINEAR = 2  # PIL.Image.Resampling.BILINEAR, what torchvision's Resize uses on PIL images
#: The OpenAI CLIPs by their sizes (vision width, layers, patch, image; text width, layers).
OPENAI_CLIPS = {
    (1024, 24, 14, 224, 768, 12): "openai/clip-vit-large-patch14",
    (1024, 24, 14, 336, 768, 12): "openai/clip-vit-large-patch14-336",
    (768, 12, 16, 224, 512, 12): "openai/clip-vit-base-patch16",
    (768, 12, 32, 224, 512, 12): "openai/clip-vit-base-patch32",
}
AUTO = "auto"


def openai_clip_for(layout: OfficialLayout) -> Optional[str]:
    """The Hub id of the OpenAI CLIP with the checkpoint's sizes, or None."""
    key = (layout.vision_width, layout.vision_layers, layout.patch_size, layout.image_size, layout.text_width,
           layout.text_layers)
    return OPENAI_CLIPS.get(key)


def build_model(
    layout: OfficialLayout,
    weights: ConvertedWeights,
    attributes: Sequence[str],
    sentences: Sequence[str],
    *,
    tokenizer: Any = None,
    dataset: Optional[str] = None,
    clip_name_or_path: Optional[str] = None,
    imported_from: Optional[dict] = None,
    device: Optional[str] = None,
):
    """A PromptPARModel holding ``weights`` (see :func:`.keymap.convert`).

    With ``device="meta"`` nothing is allocated (to check a full-size mapping); otherwise
    the converted tensors become the model's own. Every tensor of the model is checked
    to come from the checkpoint, except the GL aggregator of a checkpoint without one
    and the positive ratios (they are not in the official files).
    """
    from transformers import CLIPModel, ViTModel
    from transformers.initialization import no_init_weights

    from ..modeling import PromptPARConfig, PromptPARModel, sentence_token_ids

    if len(attributes) != layout.num_attributes:
        raise OfficialCheckpointError(
            f"got {len(attributes)} attributes for the checkpoint's {layout.num_attributes} heads."
        )
    vocab = layout.vocab_size
    ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if tokenizer is not None else (
        vocab - 2, vocab - 1, vocab - 1)
    clip_config = layout.clip_config(*ids)
    config = PromptPARConfig(
        attributes=list(attributes), sentences=list(sentences), dataset=dataset,
        clip_name_or_path=clip_name_or_path, clip_config=clip_config,
        fusion_name_or_path=None, fusion_config=layout.fusion_config(), fusion_layers=layout.fusion_layers,
        num_regions=layout.num_regions, overlap_rows=OFFICIAL_OVERLAP_ROWS, prompts_per_group=layout.prompts_per_group,
        vision_depth=None if layout.vision_depth == layout.vision_layers else layout.vision_depth,
        text_prompts=0, threshold=OFFICIAL_THRESHOLD, visual_post_layernorm=False,
        sentence_token_ids=sentence_token_ids(tokenizer, sentences) if tokenizer is not None else None,
        imported_from=dict(imported_from or {}),
    )
    building = torch.device("meta") if device == "meta" else no_init_weights()
    with building:
        clip = CLIPModel(clip_config)
        vit = ViTModel(layout.fusion_config(), add_pooling_layer=False)
    clip.load_state_dict(weights.clip, strict=True, assign=True)
    missing, unexpected = vit.load_state_dict(weights.fusion, strict=False, assign=True)
    if unexpected or any(not name.startswith("embeddings.") for name in missing):
        raise RuntimeError(f"fusion layers do not fit ViTModel: missing {missing}, unexpected {unexpected}")
    with torch.device("meta") if device == "meta" else contextlib.nullcontext():
        model = PromptPARModel(config, clip_model=clip, fusion_vit=vit)
    del vit
    _load_prompts(model, weights)
    _load_head(model, weights, layout)
    if tokenizer is not None:
        _check_pooling(model, tokenizer)
    model.freeze_backbones()
    return model.eval()


def official_image_processor(image_size: int):
    """The official image pipeline: resize to ``image_size`` without padding, bilinear,
    mean = std = 0.5."""
    from ..image_processing import PromptPARImageProcessor

    return PromptPARImageProcessor(size=image_size, image_mean=OFFICIAL_IMAGE_MEAN, image_std=OFFICIAL_IMAGE_STD,
                                   resample=BILINEAR, do_pad=False)


def official_processor(image_size: int, tokenizer: Any):
    """The processor of an imported model: ``tokenizer`` and :func:`official_image_processor`."""
    from ..modeling import PromptPARProcessor

    return PromptPARProcessor(image_processor=official_image_processor(image_size), tokenizer=tokenizer)


def _load_prompts(model, weights: ConvertedWeights) -> None:
    from peft import set_peft_model_state_dict

    sources = {"region_prompt_class_tokens": weights.class_tokens, "region_prompt_vision": weights.prompts}
    state = {}
    for name, expected in model._adapter_state().items():
        tensor = sources.get(name.rsplit(".", 1)[-1])
        if tensor is None or tensor.shape != expected.shape:
            raise RuntimeError(f"no checkpoint tensor fits the adapter tensor {name} {tuple(expected.shape)}")
        state[name] = tensor
    used = {name.rsplit(".", 1)[-1] for name in state}
    unused = [name for name, tensor in sources.items() if tensor is not None and name not in used]
    if unused:
        raise RuntimeError(f"the adapter has no place for the checkpoint's {unused}")
    result = set_peft_model_state_dict(model.peft_clip, state, adapter_name=model.peft_clip.active_adapter)
    if result.unexpected_keys:
        raise RuntimeError(f"the adapter did not take {result.unexpected_keys}")


def _load_head(model, weights: ConvertedWeights, layout: OfficialLayout) -> None:
    result = model.load_state_dict(weights.head, strict=False)
    not_from_checkpoint = (CLIP_STATE_PREFIX, "fusion.", "positive_ratios") + (() if layout.has_aggregator else ("aggregator.",))
    missing = [name for name in result.missing_keys if not name.startswith(not_from_checkpoint)]
    if result.unexpected_keys or missing:
        raise RuntimeError(f"head tensors do not fit: missing {missing}, unexpected {result.unexpected_keys}")


def _check_tokenizer(tokenizer, vocab_size: int) -> None:
    """The tokenizer must be the one whose vocabulary the checkpoint's CLIP embeds: as many
    tokens, the end token last (as in CLIP's). Another BPE file would give other ids for the
    sentences, so other text features, without any error later."""
    size = len(tokenizer)
    if size != vocab_size or tokenizer.eos_token_id != vocab_size - 1:
        raise OfficialCheckpointError(
            f"the tokenizer has {size} tokens (end token {tokenizer.eos_token_id}), but the checkpoint's CLIP embeds "
            f"{vocab_size} (end token {vocab_size - 1}): it is not the tokenizer the checkpoint was trained with. "
            "Give CLIP's own (--clip-tokenizer openai/clip-vit-large-patch14, or the official "
            "bpe_simple_vocab_16e6.txt.gz)."
        )


def _check_pooling(model, tokenizer) -> None:
    """The official text features are read at the largest token id of each sentence;
    CLIP's at its end token. With CLIP's own vocabulary these coincide."""
    ids = model.sentence_ids
    at_end = (ids == tokenizer.eos_token_id).int().argmax(dim=-1)
    if not torch.equal(at_end, ids.argmax(dim=-1)):
        raise OfficialCheckpointError(
            "with this tokenizer the end token is not the largest id of every sentence, so the text features would "
            "not be read where the official code reads them; use CLIP's own tokenizer (--clip-tokenizer)."
        )


def head_order(names: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """For each name of ``wanted``, the index of its official head in ``names``."""
    wanted = list(wanted)
    if sorted(wanted) != sorted(names):
        problems = []
        if missing := [n for n in names if n not in wanted]:
            problems.append(f"it lacks {missing[:8]}")
        if extra := [n for n in wanted if n not in names]:
            problems.append(f"the checkpoint has no {extra[:8]}")
        raise OfficialCheckpointError(
            f"the attribute order must name each of the checkpoint's {len(names)} attributes once, but "
            f"{'; '.join(problems) or 'it repeats names'}. Use the data set the checkpoint was trained on, "
            "converted with par-prompt convert."
        )
    position = {name: i for i, name in enumerate(names)}
    return [position[name] for name in wanted]


def permute_heads(weights: ConvertedWeights, order: Sequence[int]) -> None:
    """Reorder the per-attribute tensors (heads, their BatchNorm, the aggregator's BatchNorm) in place."""
    index = torch.as_tensor(list(order))
    for name, tensor in weights.head.items():
        if name.startswith(("heads.", "aggregator.batch_norm.")) and tensor.ndim >= 1:
            weights.head[name] = tensor[index].contiguous()


def _known_table(dataset: Optional[str], num_attributes: int) -> Optional[SentenceTable]:
    """The table ``dataset`` names, when it has ``num_attributes`` entries (for the card), else None."""
    if dataset is None:
        return None
    try:
        return find_table(dataset, num_attributes)
    except OfficialCheckpointError:
        return None


def _provenance(checkpoint: OfficialCheckpoint, table: Optional[SentenceTable], weights: ConvertedWeights,
                layout: OfficialLayout, attributes_source: str) -> dict:
    from .. import __version__

    return {
        "format": "PromptPAR official checkpoint (Event-AHU/OpenPAR)",
        "file": checkpoint.path.name,
        "sha256": checkpoint.sha256(),
        "dataset": table.key if table is not None else None,
        "epoch": checkpoint.epoch,
        "clip_weights_key": checkpoint.clip_key,
        "stored_result": checkpoint.result or None,
        "attributes_from": attributes_source,
        "dropped_tensors": {name: list(shape) for name, shape in weights.dropped.items()},
        "aggregator_from_checkpoint": layout.has_aggregator,
        "par_prompt_version": __version__,
    }


def load_official_checkpoint(
    path: Union[str, Path],
    dataset: Optional[str] = None,
    *,
    attributes: Optional[Sequence[str]] = None,
    sentences: Optional[Sequence[str]] = None,
    attribute_order: Optional[Sequence[str]] = None,
    clip_tokenizer: Union[str, Path, Any] = DEFAULT_CLIP_TOKENIZER,
    clip_name_or_path: Optional[str] = AUTO,
):
    """Import an official PromptPAR checkpoint as a :class:`~par_prompt.PromptPARModel`.

    Args:
        path: the ``.pth`` file of the official code (read without unpickling code).
        dataset: its data set (``pa100k``, ``peta``, ``peta_zs``, ``rapv1``, ``rapv2``,
            ``rap_zs``, ``wider``; any case, ``-``/``_`` ignored; ``rap`` lets the head
            count choose). None: the one data set with as many attributes as heads.
        attributes, sentences: names and sentences of a checkpoint trained on other data,
            one per head in head order (the sentences it was trained with); they replace
            the data set's table.
        attribute_order: the attribute names in the order the model should output them,
            e.g. ``par_prompt.data.load(folder).attributes`` of data converted with
            ``par-prompt convert`` (which keeps the annotation files' order, while the
            official PETA and RAPv2 heads follow a body-part grouping). The heads, their
            BatchNorms and the sentences are permuted together; the fusion layers have no
            position encoding, so the probabilities are the official ones, reordered.
        clip_tokenizer: a Hub id, a folder with tokenizer files, the official
            ``bpe_simple_vocab_16e6.txt.gz``, or a tokenizer object.
        clip_name_or_path: the base the saved model names; ``"auto"`` picks the OpenAI
            CLIP with the checkpoint's sizes (None when there is none: the CLIP weights
            are then always saved with the model).

    Returns ``(model, processor)``: the model in eval mode and its
    :class:`~par_prompt.PromptPARProcessor` (the tokenizer and the official image
    pipeline); save both with :func:`save_official_model` to keep the model card.
    """
    if not Path(path).is_file():
        raise OfficialCheckpointError(f"{path} is not a file; give the path of the official checkpoint (.pth).")
    if clip_tokenizer is None:
        raise OfficialCheckpointError(
            "clip_tokenizer is needed (the CLIP tokenizer the checkpoint was trained with): give a Hub id, a folder, "
            f"the official bpe_simple_vocab_16e6.txt.gz or a tokenizer; the default is {DEFAULT_CLIP_TOKENIZER!r}."
        )
    # The tokenizer next: it is quick to load, and a wrong --clip-tokenizer should not wait for a 1.7 GB read.
    tokenizer = load_clip_tokenizer(clip_tokenizer) if isinstance(clip_tokenizer, (str, Path)) else clip_tokenizer
    checkpoint = read_checkpoint(path)
    layout = read_layout(checkpoint.clip_state, checkpoint.classifier_state)
    _check_tokenizer(tokenizer, layout.vocab_size)
    if attributes is not None:
        if sentences is None:
            raise OfficialCheckpointError(
                "attributes need their sentences: the ones the checkpoint was trained with, one per head."
            )
        table = _known_table(dataset, len(attributes))
        names, texts, source = list(attributes), list(sentences), "given"
        if len(names) != layout.num_attributes:
            raise OfficialCheckpointError(
                f"{len(names)} attributes were given for the checkpoint's {layout.num_attributes} heads."
            )
    else:
        table = find_table(dataset, layout.num_attributes)
        names, texts = list(table.attributes), list(table.sentences)
        source = f"official dataset/preprocess/{table.script}"
    weights = convert(checkpoint.clip_state, checkpoint.classifier_state, layout)
    order = list(range(len(names)))
    if attribute_order is not None:
        order = head_order(names, attribute_order)
        names, texts = [names[i] for i in order], [texts[i] for i in order]
        permute_heads(weights, order)
    checkpoint.clip_state = checkpoint.classifier_state = {}  # the converted copies are all that is needed now
    model = build_model(
        layout, weights, names, texts, tokenizer=tokenizer, dataset=table.key if table else dataset,
        clip_name_or_path=openai_clip_for(layout) if clip_name_or_path == AUTO else clip_name_or_path,
        imported_from={**_provenance(checkpoint, table, weights, layout, source), "head_order": order},
    )
    return model, official_processor(layout.image_size, tokenizer)


def save_official_model(model, processor, out: Union[str, Path], bundle_base: bool = False) -> Path:
    """Write ``model`` and ``processor`` (from :func:`load_official_checkpoint`) and the
    model card to the new directory ``out``, atomically: ``out`` appears complete or not
    at all.

    ``bundle_base=True`` also writes the checkpoint's own CLIP weights, so the folder
    loads with no download (with a tokenizer it then predicts with no network at all).
    """
    from ..fileio import atomic_directory, write_text_atomic
    from .card import render_official_card

    out = Path(out)
    if out.exists():
        raise OfficialCheckpointError(f"{out} already exists; choose a new output directory.")
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, bundle_base_weights=bundle_base)
        processor.save_pretrained(tmp)
        bundled = bundle_base or model.config.clip_name_or_path is None  # save_pretrained bundles a base it cannot name
        write_text_atomic(tmp / "README.md", render_official_card(model.config, bundled=bundled))
    return out
