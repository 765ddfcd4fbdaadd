"""PromptPARConfig: everything needed to rebuild a PromptPAR model (docs/method.md §1-§7)."""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections import Counter
from typing import Any, Optional, Sequence, Union, get_args, get_origin, get_type_hints

from transformers import CLIPConfig, PreTrainedConfig, ViTConfig

from ..thresholds import check_threshold, resolve_threshold
from ..tuner.config import RegionPromptConfig
from ..tuner.layout import region_bands

PAPER_FUSION_CHECKPOINT = "google/vit-base-patch16-224"

# Upper bounds on sizes that a config.json controls and nothing else bounds, checked before
# anything is allocated (documented in docs/saving.md). The paper's largest settings
# (105 attributes; 200 prompts per group, i.e. 1005 prompt tokens + 256 patches) fit easily.
MAX_ATTRIBUTES = 4096
MAX_SENTENCE_CHARACTERS = 4096
MAX_VISUAL_TOKENS = 4096
FINGERPRINT_PATTERN = re.compile(r"(fp16|bf16):[0-9a-f]{16}")
BASE_NAMES = ("clip", "fusion")

# RegionPromptConfig fields that PromptPARConfig carries (same names and defaults).
REGION_PROMPT_FIELDS = (
    "num_regions", "overlap_rows", "prompts_per_group", "vision_depth", "text_prompts", "text_depth",
    "text_prompt_per_sentence", "prompt_init",
)


PROBLEM_TYPE = "multi_label_classification"


def _sub_config(field: str, value: Union[None, dict, PreTrainedConfig], config_class):
    """``value`` as a ``config_class`` object (a dict is turned into one; transformers'
    strict dataclasses raise several error types, reported as one ValueError naming the field)."""
    if value is None or isinstance(value, config_class):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be a {config_class.__name__} or its dict, got {type(value).__name__}.")
    try:
        return config_class.from_dict(value)
    except Exception as error:
        raise ValueError(f"{field} is not a valid {config_class.__name__}: {' '.join(str(error).split())[:300]}") from None


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON-like ``value`` has the type ``hint`` (of a PromptPARConfig argument)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin is Union:
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is dict or origin is dict:
        key, item = args or (Any, Any)
        return isinstance(value, dict) and all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    if origin is not None and issubclass(origin, Sequence):
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:
        return " or ".join(_describe(arg) for arg in args)
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "an object"}
    if hint in names:
        return names[hint]
    if origin is dict:
        return f"an object of {_describe(args[1])} values"
    if origin is not None and issubclass(origin, Sequence):
        return f"a list (each {_describe(args[0])})"
    return f"a {getattr(hint, '__name__', hint)}"


@functools.lru_cache(maxsize=1)
def _argument_hints() -> dict[str, Any]:
    hints = get_type_hints(PromptPARConfig.__init__)
    return {name: hint for name, hint in hints.items() if name not in ("kwargs", "return")}


def _check_argument_types(values: dict[str, Any]) -> None:
    """A clear ValueError naming the first argument whose value has the wrong type (e.g.
    a string threshold or a JSON list read from config.json)."""
    hints = _argument_hints()
    for name, value in values.items():
        hint = hints.get(name)
        if hint is not None and not _matches(value, hint):
            raise ValueError(f"{name} must be {_describe(hint)}, got {value!r:.80} ({type(value).__name__}).")


class PromptPARConfig(PreTrainedConfig):
    r"""
    The configuration of a [`PromptPARModel`] (`model_type="prompt_par"`): everything needed to rebuild one.

    The backbones are given by reference (`clip_name_or_path`, `fusion_name_or_path`: a Hub id or a local
    directory) and by architecture (`clip_config`, `fusion_config`, kept as [`CLIPConfig`] and [`ViTConfig`]
    objects; see `sub_configs`). The architecture lets `PromptPARModel(config)` build without any file, e.g. on the
    meta device; the reference tells `from_pretrained` where the frozen weights live. A backbone with a config but
    no reference is randomly initialised, and its weights are then saved with the model.

    The model is a multi-label image classifier: `problem_type` is `"multi_label_classification"`, and `id2label` /
    `label2id` follow `attributes`, so `AutoModelForImageClassification` and the `image-classification` pipeline
    take a saved model as it is.

    Args:
        attributes (`list[str]`, *optional*):
            The names of the N attributes, in label order.
        sentences (`list[str]`, *optional*):
            One sentence per attribute, fed to the CLIP text tower. Defaults to
            `expand_attributes(attributes, dataset)`.
        dataset (`str`, *optional*):
            The benchmark whose sentence table to use (`"pa100k"`, `"peta"`, `"rapv1"`, `"rapv2"`).
        clip_name_or_path (`str`, *optional*):
            The CLIP backbone (both towers): a Hub id or a local directory. `None` bundles its weights with the model.
        clip_revision (`str`, *optional*):
            The Hub revision of `clip_name_or_path`.
        clip_config (`CLIPConfig` or `dict`, *optional*):
            The CLIP's architecture. A dict is turned into a `CLIPConfig`.
        fusion_name_or_path (`str`, *optional*):
            The ViT whose last `fusion_layers` layers and final layer norm initialise the MM-Former.
        fusion_revision (`str`, *optional*):
            The Hub revision of `fusion_name_or_path`.
        fusion_config (`ViTConfig` or `dict`, *optional*):
            The fusion ViT's architecture. A dict is turned into a `ViTConfig`.
        fusion_layers (`int`, *optional*, defaults to 1):
            MM-Former layers; 0 replaces them by a trainable MLP over the sequence axis (paper Table VI).
        num_regions (`int`, *optional*, defaults to 4):
            K, the horizontal regions of the image, each with its own prompts and class token.
        overlap_rows (`int`, *optional*, defaults to 2):
            Patch rows shared by neighbouring regions.
        prompts_per_group (`int`, *optional*, defaults to 10):
            m, the visual prompts of each group (global and per region).
        vision_depth (`int`, *optional*):
            Vision layers that get deep prompts (default: all).
        text_prompts (`int`, *optional*, defaults to 3):
            Text prompt tokens per layer.
        text_depth (`int`, *optional*):
            Text layers that get deep prompts (default: all).
        text_prompt_per_sentence (`bool`, *optional*, defaults to `False`):
            One set of text prompts per sentence instead of one shared set.
        prompt_init (`str`, *optional*, defaults to `"uniform"`):
            How the prompts are initialised (see `RegionPromptConfig`).
        gl_alpha (`float`, *optional*, defaults to 0.5):
            The weight α of the global-local loss (docs/method.md §6).
        gl_threshold (`float`, *optional*, defaults to 0.5):
            τ of the global-local aggregator (docs/method.md §5).
        threshold (`float`, *optional*, defaults to 0.5):
            The probability threshold of predictions and metrics.
        attribute_thresholds (`list[float]`, *optional*):
            Per-attribute thresholds (calibrated), overriding `threshold`.
        visual_post_layernorm (`bool`, *optional*, defaults to `True`):
            Pass the visual tokens through CLIP's post-layernorm before the visual projection (docs/method.md §2).
            `False` reproduces the official PromptPAR code, which skips it (models imported with `import-official`).
        initializer_range (`float`, *optional*, defaults to 0.02):
            The standard deviation of the initial weights of the projections and heads.
        save_id (`str`, *optional*):
            Written by `save_pretrained` (leave it `None`): the id shared by the files of one save.
        base_fingerprints (`dict[str, str]`, *optional*):
            Written by `save_pretrained` (leave it `None`): fingerprints of the frozen CLIP and fusion weights,
            checked by `from_pretrained`.
        sentence_token_ids (`list[list[int]]`, *optional*):
            The CLIP token ids of each sentence (`[SOT, ..., EOT]`, unpadded): all the model needs of the tokenizer.
            `PromptPARModel.from_backbones` sets them with the processor's tokenizer; a model built from a config
            without them can only run after `model.set_sentence_token_ids(...)`. `PromptPARProcessor.from_pretrained`
            checks that its tokenizer reproduces them.

    Every value is checked at construction (types, ranges, and sizes against the backbone architectures, with the
    limits `MAX_ATTRIBUTES`, `MAX_SENTENCE_CHARACTERS` and `MAX_VISUAL_TOKENS`); a bad value is a `ValueError` that
    names the field.

    Example:

    ```python
    >>> from par_prompt import PromptPARConfig, PromptPARModel
    >>> from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config

    >>> config = PromptPARConfig(attributes=["Hat", "Backpack"], clip_config=tiny_clip_config(),
    ...                          fusion_config=tiny_vit_config())
    >>> model = PromptPARModel(config)  # random backbones; set the sentences' token ids before running it
    ```
    """

    model_type = "prompt_par"
    sub_configs = {"clip_config": CLIPConfig, "fusion_config": ViTConfig}

    def __init__(
        self,
        attributes: Optional[Sequence[str]] = None,
        sentences: Optional[Sequence[str]] = None,
        dataset: Optional[str] = None,
        clip_name_or_path: Optional[str] = None,
        clip_revision: Optional[str] = None,
        clip_config: Union[None, dict, CLIPConfig] = None,
        fusion_name_or_path: Optional[str] = None,
        fusion_revision: Optional[str] = None,
        fusion_config: Union[None, dict, ViTConfig] = None,
        fusion_layers: int = 1,
        num_regions: int = 4,
        overlap_rows: int = 2,
        prompts_per_group: int = 10,
        vision_depth: Optional[int] = None,
        text_prompts: int = 3,
        text_depth: Optional[int] = None,
        text_prompt_per_sentence: bool = False,
        prompt_init: str = "uniform",
        gl_alpha: float = 0.5,
        gl_threshold: float = 0.5,
        threshold: float = 0.5,
        attribute_thresholds: Optional[Sequence[float]] = None,
        visual_post_layernorm: bool = True,
        initializer_range: float = 0.02,
        save_id: Optional[str] = None,
        base_fingerprints: Optional[dict[str, str]] = None,
        sentence_token_ids: Optional[Sequence[Sequence[int]]] = None,
        **kwargs: Any,
    ) -> None:
        arguments = {name: value for name, value in locals().items() if name not in ("self", "kwargs", "__class__")}
        for name in ("attributes", "sentences", "sentence_token_ids"):
            if isinstance(arguments[name], (list, tuple)) and len(arguments[name]) > MAX_ATTRIBUTES:
                raise ValueError(f"{name} has {len(arguments[name])} entries; PromptPAR takes at most "
                                 f"{MAX_ATTRIBUTES} attributes.")
        _check_argument_types(arguments)
        id2label = kwargs.pop("id2label", None)
        if id2label is not None and not isinstance(id2label, dict):
            raise ValueError(f"id2label must be an object mapping ids to attribute names, got {type(id2label).__name__}.")
        kwargs.pop("label2id", None)
        kwargs.pop("num_labels", None)
        problem_type = kwargs.pop("problem_type", None)
        if problem_type not in (None, PROBLEM_TYPE):
            raise ValueError(f"problem_type must be {PROBLEM_TYPE!r} (PromptPAR predicts each attribute on its own), "
                             f"got {problem_type!r}.")
        try:
            labels = [id2label[key] for key in sorted(id2label, key=int)] if id2label else None
        except (TypeError, ValueError) as error:
            raise ValueError(f"id2label must map integer ids to attribute names ({error}).") from None
        if attributes is None and labels:
            attributes = labels
        self.attributes = list(attributes or [])
        if labels and labels != self.attributes:
            raise ValueError(
                "id2label disagrees with attributes; pass attributes only (id2label and label2id follow them)."
            )
        self.sentences = list(sentences) if sentences is not None else None
        self.dataset = dataset
        self.clip_name_or_path = clip_name_or_path
        self.clip_revision = clip_revision
        self.fusion_name_or_path = fusion_name_or_path
        self.fusion_revision = fusion_revision
        self.fusion_layers = fusion_layers
        self.num_regions = num_regions
        self.overlap_rows = overlap_rows
        self.prompts_per_group = prompts_per_group
        self.vision_depth = vision_depth
        self.text_prompts = text_prompts
        self.text_depth = text_depth
        self.text_prompt_per_sentence = text_prompt_per_sentence
        self.prompt_init = prompt_init
        self.gl_alpha = gl_alpha
        self.gl_threshold = gl_threshold
        self.threshold = threshold
        self.attribute_thresholds = list(attribute_thresholds) if attribute_thresholds is not None else None
        self.visual_post_layernorm = bool(visual_post_layernorm)
        self.initializer_range = initializer_range
        self.save_id = save_id
        self.base_fingerprints = dict(base_fingerprints) if base_fingerprints is not None else None
        self.sentence_token_ids = [list(ids) for ids in sentence_token_ids] if sentence_token_ids is not None else None
        kwargs["id2label"] = {i: name for i, name in enumerate(self.attributes)}
        super().__init__(problem_type=PROBLEM_TYPE, **kwargs)
        # After PreTrainedConfig's own set-up, which would hand its attention settings down to
        # the sub-configs: a backbone's config given as an object is shared with that backbone.
        self.clip_config = _sub_config("clip_config", clip_config, CLIPConfig)
        self.fusion_config = _sub_config("fusion_config", fusion_config, ViTConfig)
        self.label2id = {name: i for i, name in enumerate(self.attributes)}
        self.check()

    def check(self) -> None:
        """Raise a ValueError naming the first field with a wrong type or value, or a size
        that does not fit the backbones (checked before anything is allocated). Runs at
        construction; ``save_pretrained`` runs it again before writing."""
        _check_argument_types({name: getattr(self, name) for name in _argument_hints() if hasattr(self, name)})
        for field, config_class in self.sub_configs.items():  # a dict assigned since construction
            setattr(self, field, _sub_config(field, getattr(self, field), config_class))
        if len(self.attributes) > MAX_ATTRIBUTES:
            raise ValueError(f"attributes has {len(self.attributes)} entries; PromptPAR takes at most {MAX_ATTRIBUTES}.")
        if len(set(self.attributes)) != len(self.attributes):
            duplicates = sorted(name for name, count in Counter(self.attributes).items() if count > 1)
            raise ValueError(f"attributes must be unique; repeated: {duplicates}")
        if self.sentences is not None:
            if len(self.sentences) != len(self.attributes):
                raise ValueError(
                    f"got {len(self.sentences)} sentences for {len(self.attributes)} attributes; give one per attribute."
                )
            long = [s for s in self.sentences if len(s) > MAX_SENTENCE_CHARACTERS]
            if long:
                raise ValueError(f"the sentence {long[0][:60]!r}... has {len(long[0])} characters; a sentence must fit "
                                 f"CLIP's 77 tokens (at most {MAX_SENTENCE_CHARACTERS} characters are accepted).")
        if self.fusion_layers < 0:
            raise ValueError(f"fusion_layers must be 0 (MLP) or a positive integer, got {self.fusion_layers!r}.")
        for name in ("gl_threshold", "threshold"):
            check_threshold(getattr(self, name), name)
        for name in ("gl_alpha", "initializer_range"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite, non-negative number, got {value}.")
        if self.attribute_thresholds is not None:
            resolve_threshold(threshold=self.attribute_thresholds, num_attributes=len(self.attributes),
                              attribute_names=self.attributes, given_as="attribute_thresholds")
        self._check_saved_records()
        self.region_prompt_config()  # the region-prompt settings, checked by the tuner's own rules
        self._check_sizes()

    def _check_saved_records(self) -> None:
        """The fields save_pretrained writes: well-formed, and one token-id list per sentence."""
        if self.save_id is not None and not re.fullmatch(r"[0-9a-f]{32}", self.save_id):
            raise ValueError(f"save_id must be 32 hexadecimal digits, got {self.save_id!r:.40}.")
        for name, fingerprint in (self.base_fingerprints or {}).items():
            if name not in BASE_NAMES or not FINGERPRINT_PATTERN.fullmatch(fingerprint):
                raise ValueError(
                    f"base_fingerprints must map 'clip' / 'fusion' to 'fp16:' or 'bf16:' and 16 hexadecimal digits, "
                    f"got {name!r}: {fingerprint!r:.40}."
                )
        ids = self.sentence_token_ids
        if ids is not None:
            if len(ids) != len(self.attributes):
                raise ValueError(f"sentence_token_ids has {len(ids)} entries for {len(self.attributes)} attributes.")
            if any(not row or min(row) < 0 for row in ids):
                raise ValueError("sentence_token_ids must hold a non-empty list of non-negative token ids per sentence.")

    def _check_sizes(self) -> None:
        """Sizes against the backbone architectures, when the config has them: a config.json
        must not make the model allocate more than the backbones can use."""
        if self.clip_config is not None:
            vision, text = self._clip_sizes()
            grid = vision["image_size"] // vision["patch_size"]
            if grid < 1:
                raise ValueError(f"clip_config: image_size {vision['image_size']} is smaller than the patch size.")
            region_bands(grid, self.num_regions, self.overlap_rows)  # raises if the regions do not fit the rows
            if self.overlap_rows > grid:
                raise ValueError(f"overlap_rows={self.overlap_rows} exceeds the {grid} patch rows of the CLIP.")
            tokens = (self.num_regions + 1) * (self.prompts_per_group + 1) + grid * grid
            if tokens > MAX_VISUAL_TOKENS:
                raise ValueError(
                    f"num_regions={self.num_regions} and prompts_per_group={self.prompts_per_group} make a visual "
                    f"sequence of {tokens} tokens; at most {MAX_VISUAL_TOKENS} are accepted. Use fewer prompts."
                )
            for name, tower in (("vision_depth", vision), ("text_depth", text)):
                depth = getattr(self, name)
                if depth is not None and depth > tower["num_hidden_layers"]:
                    raise ValueError(
                        f"{name}={depth} exceeds the {tower['num_hidden_layers']} layers of the CLIP's "
                        f"{name.split('_')[0]} tower."
                    )
            context = text["max_position_embeddings"]
            lengths = [len(row) for row in self.sentence_token_ids or ()]
            longest = max(lengths, default=3)
            if self.text_prompts + longest > context:
                if self.sentences is not None and len(self.sentences) == len(lengths):
                    sentence = self.sentences[lengths.index(longest)]
                    fix = (f"shorten it, or use at most {context - longest} text prompts" if longest < context
                           else f"shorten it to at most {context - self.text_prompts} tokens")
                    raise ValueError(
                        f"text_prompts={self.text_prompts} leaves no room in CLIP's {context} text positions for the "
                        f"sentence {sentence[:80]!r} ({longest} tokens with its start and end tokens); {fix}."
                    )
                fix = (f"use at most {context - longest} text prompts" if longest < context
                       else f"shorten it to at most {context - self.text_prompts} tokens")
                raise ValueError(
                    f"text_prompts={self.text_prompts} leaves no room in CLIP's {context} text positions for a "
                    f"sentence of {longest} tokens; {fix}."
                )
            vocab = text["vocab_size"]
            if any(max(row) >= vocab for row in self.sentence_token_ids or ()):
                raise ValueError(f"sentence_token_ids holds ids beyond the CLIP vocabulary of {vocab} tokens.")
        if self.fusion_config is not None:
            layers = self._sizes("fusion_config", self.get_fusion_config(), "num_hidden_layers", "hidden_size",
                                 "num_attention_heads", "intermediate_size")["num_hidden_layers"]
            if self.fusion_layers > layers:
                raise ValueError(
                    f"fusion_layers={self.fusion_layers} exceeds the {layers} layers of the fusion ViT "
                    f"(fusion_config); use at most {layers}."
                )

    @staticmethod
    def _sizes(where: str, source, *names: str) -> dict[str, int]:
        """Positive integer sizes of a backbone config, or a ValueError naming the field."""
        sizes = {name: getattr(source, name, None) for name in names}
        bad = {name: value for name, value in sizes.items()
               if not isinstance(value, int) or isinstance(value, bool) or value < 1}
        if bad:
            raise ValueError(f"{where} must give positive integer sizes; got {bad}.")
        return sizes

    def _clip_sizes(self) -> tuple[dict[str, int], dict[str, int]]:
        clip = self.get_clip_config()
        vision = self._sizes("clip_config.vision_config", clip.vision_config, "image_size", "patch_size",
                             "num_hidden_layers", "hidden_size", "num_attention_heads")
        text = self._sizes("clip_config.text_config", clip.text_config, "max_position_embeddings", "vocab_size",
                           "num_hidden_layers", "hidden_size", "num_attention_heads")
        return vision, text

    @property
    def num_attributes(self) -> int:
        return len(self.attributes)

    def region_prompt_config(self) -> RegionPromptConfig:
        """The PEFT config of the CLIP prompts (validated by RegionPromptConfig itself)."""
        settings = {name: getattr(self, name) for name in REGION_PROMPT_FIELDS}
        if self.text_prompt_per_sentence:
            settings["num_sentences"] = self.num_attributes
        # The CLIP reference goes into the adapter's config when it is saved (peft would
        # overwrite it here with the in-memory model's name).
        return RegionPromptConfig(**settings)

    def _backbone_config(self, field: str):
        value = getattr(self, field)
        if value is None:
            raise ValueError(
                f"This PromptPARConfig has no {field}. Build it with PromptPARConfig.from_backbones(...), or pass "
                f"{field} (a {self.sub_configs[field].__name__} or its dict)."
            )
        return value

    def get_clip_config(self) -> CLIPConfig:
        """``clip_config``, or a ValueError saying how to give one."""
        return self._backbone_config("clip_config")

    def get_fusion_config(self) -> ViTConfig:
        """``fusion_config``, or a ValueError saying how to give one."""
        return self._backbone_config("fusion_config")

    @classmethod
    def from_backbones(
        cls,
        clip_name_or_path: str,
        attributes: Sequence[str],
        fusion_name_or_path: Optional[str] = PAPER_FUSION_CHECKPOINT,
        *,
        clip_revision: Optional[str] = None,
        fusion_revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        token: Union[None, bool, str] = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> "PromptPARConfig":
        """A config whose architectures are read from the two backbone checkpoints."""
        from .loading import load_backbone_config

        hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        clip_config = load_backbone_config(CLIPConfig, "CLIP", clip_name_or_path, clip_revision, **hub)
        fusion_config = load_backbone_config(ViTConfig, "fusion ViT", fusion_name_or_path, fusion_revision, **hub)
        return cls(
            attributes=attributes, clip_name_or_path=clip_name_or_path, clip_revision=clip_revision,
            clip_config=clip_config, fusion_name_or_path=fusion_name_or_path, fusion_revision=fusion_revision,
            fusion_config=fusion_config, **kwargs,
        )
