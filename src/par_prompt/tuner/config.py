"""Configuration of region prompt tuning (docs/method.md §2-§3)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from peft.config import PeftConfig

from .registry import ensure_peft_type_member

PROMPT_INITS = ("uniform", "zeros")

# Fields that only act on one tower. At their defaults they are ignored on a model that
# lacks the tower; changed from the default on such a model they would silently do
# nothing, so the tuner raises instead (see ``RegionPromptConfig.fields_changed``).
VISION_FIELDS = ("num_regions", "overlap_rows", "prompts_per_group", "vision_depth")
TEXT_FIELDS = ("text_prompts", "text_depth", "text_prompt_per_sentence", "num_sentences")


@dataclass
class RegionPromptConfig(PeftConfig):
    """Region-aware deep prompts for Hugging Face CLIP models (PEFT type ``REGION_PROMPT``).

    Works on ``CLIPVisionModel``, ``CLIPTextModel``, ``CLIPModel`` (both towers) and the
    ``...WithProjection`` variants. Only the prompts and the region class tokens train.

    Vision: ``num_regions`` horizontal bands of the patch grid, each with a class token
    and ``prompts_per_group`` prompts, plus ``prompts_per_group`` global prompts, in the
    first ``vision_depth`` encoder layers (deep prompts). ``num_regions=0`` is plain
    VPT-deep, ``vision_depth=1`` VPT-shallow.

    Text: ``text_prompts`` prompts right after the start token in the first
    ``text_depth`` text layers, shared by all sentences or one set per sentence.
    """

    num_regions: int = field(default=4, metadata={"help": "Horizontal regions K; 0 means global prompts only (VPT)."})
    overlap_rows: int = field(default=2, metadata={"help": "Rows each region is widened by (half up, half down)."})
    prompts_per_group: int = field(
        default=10, metadata={"help": "Prompts m per group; there are num_regions + 1 groups."}
    )
    vision_depth: Optional[int] = field(
        default=None, metadata={"help": "Vision layers with their own prompts; None = all, 1 = shallow."}
    )
    text_prompts: int = field(default=3, metadata={"help": "Text prompts n per layer; 0 means no text prompts."})
    text_depth: Optional[int] = field(
        default=None, metadata={"help": "Text layers with their own prompts; None = all."}
    )
    text_prompt_per_sentence: bool = field(
        default=False, metadata={"help": "One set of text prompts per sentence (needs num_sentences)."}
    )
    num_sentences: Optional[int] = field(
        default=None, metadata={"help": "Number of sentences, for text_prompt_per_sentence=True."}
    )
    prompt_init: str = field(default="uniform", metadata={"help": "'uniform' (docs/method.md §2) or 'zeros'."})
    target_modules: Optional[list[str]] = field(
        default=None,
        metadata={"help": "Module names of the CLIP towers to prompt (e.g. ['vision_model']); None = every tower."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = ensure_peft_type_member()
        self._check()

    def _check(self) -> None:
        for name in ("num_regions", "overlap_rows", "prompts_per_group", "text_prompts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        for name in ("vision_depth", "text_depth"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None (every layer) or a positive integer, got {value!r}.")
        if self.num_regions > 0 and self.prompts_per_group <= 0:
            raise ValueError(
                f"prompts_per_group must be positive when num_regions > 0 (got {self.prompts_per_group}): every "
                "region needs its own prompts. Use num_regions=0 to train without region prompts."
            )
        if self.prompt_init not in PROMPT_INITS:
            raise ValueError(f"prompt_init must be one of {PROMPT_INITS}, got {self.prompt_init!r}.")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if self.text_prompt_per_sentence:
            if self.num_sentences is None or self.num_sentences < 1:
                raise ValueError(
                    "text_prompt_per_sentence=True needs num_sentences, the number of sentences the text tower "
                    f"will always see in the same order (got num_sentences={self.num_sentences!r})."
                )
            if self.text_prompts == 0:
                raise ValueError("text_prompt_per_sentence=True has no effect with text_prompts=0.")

    @property
    def uses_vision(self) -> bool:
        """Whether the config adds anything to a vision tower."""
        return self.prompts_per_group > 0 or self.num_regions > 0

    @property
    def uses_text(self) -> bool:
        """Whether the config adds anything to a text tower."""
        return self.text_prompts > 0

    def fields_changed(self, names: tuple[str, ...]) -> list[str]:
        """Names among ``names`` whose value differs from the dataclass default."""
        defaults = {f.name: f.default for f in fields(self)}
        return [name for name in names if getattr(self, name) != defaults[name]]
