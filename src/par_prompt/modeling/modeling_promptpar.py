"""PromptPARModel: frozen CLIP with region prompts, MM-Former, heads and GL aggregator.

The path of the data (docs/method.md §2-§6)::

    pixels --CLIP vision tower + region prompts--> (B, L, w) --post-LN, projection--> (B, L, d)
    sentences --CLIP text tower + text prompts--> (N, d)          (cached without autograd)
    [text (N, F), visual (B, L, F)] --MM-Former--> first N tokens --heads + BN--> logits (B, N)
                                            (the visual tokens' own outputs are never computed)
    class tokens (B, K+1, d) x text (N, d) --aggregator--> gl_logits (B, N)
    loss = wBCE(logits) + alpha * wBCE(gl_logits)
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterator, Optional, Union

import torch
from peft import get_peft_model
from torch import nn
from transformers import CLIPModel, PreTrainedModel, ViTModel

from ..losses import validate_labels, weighted_bce_with_logits
from ..sentences import resolve_sentences
from ..tuner.layer import RegionPromptLayer
from ..tuner.text import TextPromptEmbeddingLayer, trimmed_length
from ..tuner.vision import VisionPromptLayer
from . import text_cache
from .configuration import PromptPARConfig
from .fusion import MMFormer, SequenceMLP
from .heads import AttributeHeads, GlobalLocalAggregator
from .outputs import PromptPAROutput

from .serialization import PromptPARSerializationMixin


def _drops_out(module: nn.Module) -> bool:
    """Whether ``module`` applies dropout at random in its current mode (torch's dropout
    modules, and the rates that CLIP and ViT attention read from their configs)."""
    if not module.training:
        return False
    rates = ["dropout", "attention_dropout", "dropout_prob"]
    if isinstance(module, nn.modules.dropout._DropoutNd):
        rates.append("p")
    return any(isinstance(rate, float) and rate > 0 for rate in (getattr(module, name, None) for name in rates))


class PromptPARModel(PromptPARSerializationMixin, PreTrainedModel):
    """PromptPAR (docs/method.md): pedestrian attribute recognition on a frozen CLIP.

    Build a new model from pretrained backbones with :meth:`from_backbones`, load a
    trained one with :meth:`from_pretrained`. ``PromptPARModel(config)`` builds from
    configs alone (random backbones, or on the meta device for sizes).

    The model holds no tokenizer and no image processor: those are the
    :class:`~par_prompt.PromptPARProcessor`'s. Of the tokenizer it needs only the token
    ids of its attribute sentences, ``config.sentence_token_ids`` (both constructors set
    them; :meth:`set_sentence_token_ids` sets them on a model built from a config).
    Its input is ``pixel_values`` from the processor; prediction on raw images is
    :class:`~par_prompt.inference.PromptPARPredictor`'s.

    Attributes:
        peft_clip: the CLIP with the region prompts, a ``peft.PeftModel``.
        clip_model: the ``CLIPModel`` inside it (its frozen towers carry the prompt layers).
    """

    config_class = PromptPARConfig
    base_model_prefix = "prompt_par"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPEncoderLayer", "ViTLayer"]

    def __init__(
        self,
        config: PromptPARConfig,
        clip_model: Optional[CLIPModel] = None,
        fusion_vit: Optional[ViTModel] = None,
    ) -> None:
        super().__init__(config)
        if not config.attributes:
            raise ValueError("PromptPARConfig.attributes is empty: give the names of the attributes to recognise.")
        config.sentences = resolve_sentences(config.attributes, config.sentences, config.dataset)
        num_attributes = config.num_attributes

        clip = clip_model if clip_model is not None else CLIPModel(config.get_clip_config())
        clip.requires_grad_(False)
        with warnings.catch_warnings():  # peft reads a property transformers 5 deprecated
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            self.peft_clip = get_peft_model(clip, config.region_prompt_config())
        # Looked up once: the text-feature cache key is computed on every eval forward.
        self._prompt_layers = [m for m in self.peft_clip.modules() if isinstance(m, RegionPromptLayer)]
        clip_config = clip.config
        projection_dim = clip_config.projection_dim
        fusion_config = config.get_fusion_config()
        width = fusion_config.hidden_size

        self.text_projection = nn.Linear(projection_dim, width)
        self.visual_projection = nn.Linear(projection_dim, width)
        if config.fusion_layers > 0:
            self.fusion = MMFormer(fusion_config, config.fusion_layers)
            if fusion_vit is not None:
                self.fusion.load_from_vit(fusion_vit)
        else:
            self.fusion = SequenceMLP(num_attributes + self.visual_length, width, fusion_config.layer_norm_eps)
        self.heads = AttributeHeads(num_attributes, width)
        self.aggregator = GlobalLocalAggregator(num_attributes, config.gl_threshold)
        self.register_buffer("positive_ratios", torch.full((num_attributes,), math.nan))
        self.register_buffer("sentence_ids", self._padded_sentence_ids(config.sentence_token_ids), persistent=False)
        self._text_cache: Optional[text_cache.TextCacheEntry] = None

        # The backbones come initialised (by their own classes or from checkpoints);
        # post_init must only initialise the parts this class adds.
        for module in [*self.peft_clip.modules(), *(self.fusion.layers.modules() if config.fusion_layers else [])]:
            module._is_hf_initialized = True
        self.post_init()
        self.freeze_backbones()

    # ------------------------------------------------------------------ structure
    @property
    def clip_model(self) -> CLIPModel:
        """The CLIPModel inside :attr:`peft_clip`, carrying the prompt layers."""
        return self.peft_clip.get_base_model()

    @property
    def visual_length(self) -> int:
        """L, the length of the prompted visual sequence at the model's image size:
        (K + 1) * (m + 1) + G * G, which is 1 + G * G without visual prompts (K = m = 0)."""
        vision = self.config.get_clip_config().vision_config
        grid = vision.image_size // vision.patch_size
        return (self.config.num_regions + 1) * (self.config.prompts_per_group + 1) + grid * grid

    def _class_token_slice(self) -> slice:
        """CLS, CLS_1..CLS_K as a strided slice of the visual sequence, from the layout of
        the adapter that ran (each class token leads its group of m + 1 tokens; with the
        adapter disabled or without visual prompts, just CLS)."""
        encoder = self._prompt_layer(VisionPromptLayer)
        return slice(0, 1, 1) if encoder is None else encoder.class_token_slice()

    def class_token_indices(self) -> torch.Tensor:
        """Positions of CLS, CLS_1..CLS_K in the visual sequence (of the active adapter)."""
        tokens = self._class_token_slice()
        return torch.arange(tokens.start, tokens.stop, tokens.step)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if module is self.text_projection or module is self.visual_projection or isinstance(module, AttributeHeads):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, GlobalLocalAggregator):
            nn.init.ones_(module.temperature)
        elif isinstance(module, nn.BatchNorm1d):
            module.reset_parameters()
        elif isinstance(module, SequenceMLP):
            for layer in module.mix:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, std=std)
                    nn.init.zeros_(layer.bias)
        elif isinstance(module, nn.LayerNorm) and module is getattr(self.fusion, "norm", None):
            if self.config.fusion_layers == 0:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def prompt_layers(self) -> Iterator[RegionPromptLayer]:
        return iter(self._prompt_layers)

    def _prompt_layer(self, kind: type) -> Optional[RegionPromptLayer]:
        """The prompt layer of type ``kind``, if the model has one."""
        return next((layer for layer in self._prompt_layers if isinstance(layer, kind)), None)

    @staticmethod
    def _prompt_containers(layers) -> Iterator[nn.ParameterDict]:
        """The per-adapter ParameterDicts of ``layers``."""
        return (getattr(layer, name) for layer in layers for name in layer.adapter_layer_names)

    def prompt_parameters(self) -> list[nn.Parameter]:
        """Visual prompts, region class tokens and text prompts of the active adapter (lr 4e-3 in the paper)."""
        adapter = self.peft_clip.active_adapter
        return [params[adapter] for params in self._prompt_containers(self._prompt_layers) if adapter in params]

    def head_parameters(self) -> list[nn.Parameter]:
        """The head-side trainable parameters (lr 8e-3 in the paper): projections, fusion
        norm (or the sequence MLP), heads, BatchNorms and the temperature."""
        frozen = {id(p) for p in self.fusion.frozen_parameters()}
        modules = [self.text_projection, self.visual_projection, self.fusion, self.heads, self.aggregator]
        return [p for m in modules for p in m.parameters() if id(p) not in frozen]

    def freeze_backbones(self) -> None:
        """docs/method.md §7: only prompts and head-side parameters train."""
        self.requires_grad_(False)
        for param in [*self.prompt_parameters(), *self.head_parameters()]:
            param.requires_grad_(True)

    # ------------------------------------------------------------ sentence ids
    def _padded_sentence_ids(self, token_ids) -> torch.Tensor:
        """``(N, C)`` ids of the sentences, each row padded with its end token to the
        CLIP's C text positions (``(N, 0)`` without ids). A CLIP tokenizer pads with
        its end token too, and positions after it never reach the pooled feature."""
        if token_ids is None:
            return torch.zeros(self.config.num_attributes, 0, dtype=torch.long)
        context = self.config.get_clip_config().text_config.max_position_embeddings
        return torch.tensor([list(row) + [row[-1]] * (context - len(row)) for row in token_ids], dtype=torch.long)

    def set_sentence_token_ids(self, token_ids) -> None:
        """Give the model the token ids of its sentences (one list per attribute,
        ``[SOT, tokens..., EOT]`` unpadded), e.g. ``processor.sentence_token_ids(
        model.config.sentences)``; they go into ``config.sentence_token_ids``, checked
        against the CLIP (text positions, vocabulary)."""
        previous = self.config.sentence_token_ids
        self.config.sentence_token_ids = [[int(i) for i in row] for row in token_ids]
        try:
            self.config.check()
        except ValueError:
            self.config.sentence_token_ids = previous
            raise
        self.sentence_ids = self._padded_sentence_ids(self.config.sentence_token_ids).to(self.positive_ratios.device)
        self._text_cache = None

    def set_positive_ratios(self, ratios) -> None:
        """Positive ratio of each attribute in the training split (docs/method.md §6); saved with the model."""
        ratios = torch.as_tensor(ratios, dtype=torch.float32).flatten()
        if ratios.numel() != self.config.num_attributes:
            raise ValueError(
                f"Expected {self.config.num_attributes} positive ratios (one per attribute), got {ratios.numel()}."
            )
        if not torch.all((ratios >= 0) & (ratios <= 1)):
            raise ValueError("Positive ratios must lie in [0, 1].")
        self.positive_ratios.copy_(ratios.to(self.positive_ratios.device))

    # ----------------------------------------------------------------------- text
    def _text_dependencies(self) -> tuple[list[torch.Tensor], tuple]:
        """What the text features depend on besides the sentence ids (see :mod:`.text_cache`):
        the text tower's and the text projection's tensors (every adapter's prompts
        included), and the adapter / device / autocast context."""
        clip = self.clip_model
        tensors = [*clip.text_model.parameters(), *clip.text_model.buffers(), *clip.text_projection.parameters()]
        device = self.sentence_ids.device
        autocast = torch.is_autocast_enabled(device.type)
        context = (str(self.peft_clip.active_adapter), any(layer.disable_adapters for layer in self._prompt_layers),
                   device, autocast, torch.get_autocast_dtype(device.type) if autocast else None)
        return tensors, context

    def _run_text_tower(self) -> torch.Tensor:
        """Projected pooled sentence features (N, d), the tower run on the sentences cut
        after the longest one's end token plus the text prompts' slots
        (:func:`~par_prompt.tuner.text.trimmed_length`): the same features as at CLIP's 77
        positions, for a fraction of the work."""
        clip = self.clip_model
        ids = self.sentence_ids
        embeddings = self._prompt_layer(TextPromptEmbeddingLayer)
        num_prompts = 0 if embeddings is None else embeddings.active_num_prompts()
        ids = ids[:, : trimmed_length(ids, num_prompts, clip.config.text_config.eos_token_id)]
        return clip.text_projection(clip.text_model(input_ids=ids).pooler_output)

    def text_features(self) -> torch.Tensor:
        """Projected sentence features (N, d).

        With autograd on they are computed on every call (each call gets its own graph).
        Without it (``torch.no_grad``, ``torch.inference_mode``) they are computed once and
        reused as long as nothing they depend on changes (:mod:`.text_cache` gives the
        rule); the cached tensor is an ordinary tensor without a graph.
        """
        if self.sentence_ids.shape[1] == 0:
            raise ValueError(
                "This model has no token ids for its attribute sentences (config.sentence_token_ids is None). Set "
                "them with model.set_sentence_token_ids(processor.sentence_token_ids(model.config.sentences)), "
                "processor being the PromptPARProcessor of the CLIP base, or build the model with "
                "PromptPARModel.from_backbones / from_pretrained, which set them."
            )
        if torch.is_grad_enabled():
            return self._run_text_tower()
        tensors, context = self._text_dependencies()
        features = text_cache.lookup(self._text_cache, tensors, self.sentence_ids, context)
        if features is None:
            # Outside inference mode (and still without autograd): the cached tensor must
            # serve later no-grad forwards whether or not they run in inference mode.
            with torch.inference_mode(False), torch.no_grad():
                features = self._run_text_tower()
                self._text_cache = text_cache.store(tensors, self.sentence_ids, context, features)
        return features

    # -------------------------------------------------------------------- forward
    def _forward_mode(self, training: Optional[bool]) -> bool:
        """Whether this forward trains: the model's mode, or ``training=False`` (see forward)."""
        if training is None or bool(training) == self.training:
            return self.training
        if training:
            raise ValueError("forward(training=True) needs the model in training mode: call model.train() first.")
        dropping = [name for name, module in self.named_modules() if _drops_out(module)]
        if dropping:
            raise ValueError(
                f"forward(training=False) cannot compute eval-mode results while {dropping[0]!r} (and "
                f"{len(dropping) - 1} other module(s)) apply dropout in training mode; call model.eval() first."
            )
        return False

    def visual_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The prompted visual sequence after CLIP's post-layernorm (unless
        ``config.visual_post_layernorm`` is False) and projection: (B, L, d)."""
        clip = self.clip_model
        hidden = clip.vision_model(pixel_values=pixel_values).last_hidden_state
        if self.config.visual_post_layernorm:
            hidden = clip.vision_model.post_layernorm(hidden)
        return clip.visual_projection(hidden)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        output_features: bool = False,
        compute_gl_logits: bool = True,
        return_dict: Optional[bool] = None,
        training: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[PromptPAROutput, tuple]:
        """
        Args:
            pixel_values: (B, 3, S, S) images from the PromptPAR image processor.
            labels: (B, N) with 1, 0 or 2 (uncertain); gives ``loss``.
            output_features: also return the visual tokens and text features.
            compute_gl_logits: run the GL aggregator; predictions use ``logits`` only, so
                inference may skip it (``gl_logits`` is then None). Forced on with labels.
            training: None follows the model's mode. False computes as in eval mode
                (BatchNorm running statistics, any batch size) without changing the mode
                or any state of a model in training mode, so prediction can run while the
                model trains, and from several threads. A model in training mode with
                active dropout refuses it (its result would be random).
        """
        training = self._forward_mode(training)
        if labels is not None:
            validate_labels(labels, self.config.num_attributes)
        text = self.text_features()  # (N, d)
        visual = self.visual_tokens(pixel_values)  # (B, L, d)
        batch, num_attributes = visual.shape[0], text.shape[0]

        text_tokens = self.text_projection(text.to(visual.dtype)).unsqueeze(0).expand(batch, -1, -1)
        if training and batch < 2:
            raise ValueError("Training needs batches of at least 2 images (the heads end in a BatchNorm).")
        sequence = torch.cat([text_tokens, self.visual_projection(visual)], dim=1)  # (B, N + L, F)
        fused = self.fusion(sequence, num_outputs=num_attributes)  # (B, N, F): only the text tokens feed the heads
        logits = self.heads(fused, use_running_stats=not training)
        gl_logits = None
        if compute_gl_logits or labels is not None:
            # A strided view: no index tensor to copy to the device (and wait for) on every forward.
            class_tokens = visual[:, self._class_token_slice()]
            gl_logits = self.aggregator(class_tokens, text, self.clip_model.logit_scale, use_running_stats=not training)

        loss = None
        if labels is not None:
            ratios = self.positive_ratios
            if torch.isnan(ratios).any():
                raise ValueError(
                    "The loss needs the positive ratio of each attribute in the training split: call "
                    "model.set_positive_ratios(ratios) first (par_prompt.losses.compute_positive_ratios(labels))."
                )
            loss = weighted_bce_with_logits(logits, labels, ratios)
            loss = loss + self.config.gl_alpha * weighted_bce_with_logits(gl_logits, labels, ratios)

        output = PromptPAROutput(
            loss=loss, logits=logits, gl_logits=gl_logits,
            visual_tokens=visual if output_features else None, text_features=text if output_features else None,
        )
        return output if return_dict is not False else output.to_tuple()
