"""PromptPARConfig: everything needed to rebuild a PromptPAR model (METHOD.md §1-§7)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from transformers import CLIPConfig, PreTrainedConfig, ViTConfig

from ..tuner.config import RegionPromptConfig

PAPER_FUSION_CHECKPOINT = "google/vit-base-patch16-224"

# RegionPromptConfig fields that PromptPARConfig carries (same names and defaults).
REGION_PROMPT_FIELDS = (
    "num_regions", "overlap_rows", "prompts_per_group", "vision_depth", "text_prompts", "text_depth",
    "text_prompt_per_sentence", "prompt_init",
)


def _as_dict(config: Union[None, dict, PreTrainedConfig]) -> Optional[dict]:
    if config is None or isinstance(config, dict):
        return config
    return config.to_dict()


class PromptPARConfig(PreTrainedConfig):
    """Configuration of :class:`PromptPARModel` (``model_type="prompt_par"``).

    Backbones are given by reference (``clip_name_or_path``, ``fusion_name_or_path``: a
    Hub id or a local directory) and by architecture (``clip_config``, ``fusion_config``).
    The architecture lets ``PromptPARModel(config)`` build without any file, e.g. on the
    meta device; the reference tells ``from_pretrained`` where the frozen weights live.
    A backbone with a config but no reference is randomly initialised, and its weights
    are then saved with the model (they could not be rebuilt otherwise).

    Args:
        attributes: attribute names, in label order (N of them).
        sentences: one sentence per attribute; default: ``expand_attributes(attributes, dataset)``.
        dataset: benchmark whose sentence table to use ("pa100k", "peta", "rapv1", "rapv2").
        clip_name_or_path, clip_revision, clip_config: the CLIP backbone (both towers).
        fusion_name_or_path, fusion_revision, fusion_config: the ViT whose last
            ``fusion_layers`` layers and final layer norm initialise the MM-Former.
        fusion_layers: MM-Former layers; 0 replaces them by a trainable MLP over the
            sequence axis (paper Table VI).
        num_regions ... prompt_init: the region-prompt settings (see RegionPromptConfig).
        gl_alpha: weight of the global-local loss (α, METHOD.md §6).
        gl_threshold: τ of the aggregator (METHOD.md §5).
        threshold: probability threshold for predictions and metrics.
        attribute_thresholds: optional per-attribute thresholds (calibrated), overriding
            ``threshold``.
        visual_post_layernorm: pass the visual tokens through CLIP's post-layernorm before
            the visual projection (docs/method.md §2). False reproduces the official
            PromptPAR code, which skips it (models imported with ``import-official``).
    """

    model_type = "prompt_par"

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
        **kwargs: Any,
    ) -> None:
        id2label = kwargs.pop("id2label", None)
        kwargs.pop("label2id", None)
        kwargs.pop("num_labels", None)
        labels = [id2label[key] for key in sorted(id2label, key=int)] if id2label else None
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
        self.clip_config = _as_dict(clip_config)
        self.fusion_name_or_path = fusion_name_or_path
        self.fusion_revision = fusion_revision
        self.fusion_config = _as_dict(fusion_config)
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
        kwargs["id2label"] = {i: name for i, name in enumerate(self.attributes)}
        super().__init__(**kwargs)
        self.label2id = {name: i for i, name in enumerate(self.attributes)}
        self._check()

    def _check(self) -> None:
        if len(set(self.attributes)) != len(self.attributes):
            duplicates = sorted({a for a in self.attributes if self.attributes.count(a) > 1})
            raise ValueError(f"attributes must be unique; repeated: {duplicates}")
        if self.sentences is not None and len(self.sentences) != len(self.attributes):
            raise ValueError(
                f"got {len(self.sentences)} sentences for {len(self.attributes)} attributes; give one per attribute."
            )
        if not isinstance(self.fusion_layers, int) or self.fusion_layers < 0:
            raise ValueError(f"fusion_layers must be 0 (MLP) or a positive integer, got {self.fusion_layers!r}.")
        for name in ("gl_threshold", "threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}.")
        if self.gl_alpha < 0:
            raise ValueError(f"gl_alpha must be non-negative, got {self.gl_alpha}.")
        if self.attribute_thresholds is not None:
            if len(self.attribute_thresholds) != len(self.attributes):
                raise ValueError(
                    f"attribute_thresholds has {len(self.attribute_thresholds)} values for "
                    f"{len(self.attributes)} attributes."
                )
            if not all(0.0 <= t <= 1.0 for t in self.attribute_thresholds):
                raise ValueError("attribute_thresholds must all lie in [0, 1].")
        self.region_prompt_config()  # the region-prompt settings, checked by the tuner's own rules

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

    def _backbone_config(self, field: str, config_class):
        value = getattr(self, field)
        if value is None:
            raise ValueError(
                f"This PromptPARConfig has no {field}. Build it with PromptPARConfig.from_backbones(...), or pass "
                f"{field} (a {config_class.__name__} or its dict)."
            )
        return config_class.from_dict(value)

    def get_clip_config(self) -> CLIPConfig:
        return self._backbone_config("clip_config", CLIPConfig)

    def get_fusion_config(self) -> ViTConfig:
        return self._backbone_config("fusion_config", ViTConfig)

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
