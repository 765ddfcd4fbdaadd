"""The embedded demo: PromptPAR trained on tiny backbones and synthetic data in minutes.

``par-prompt train`` (and ``accelerate launch examples/train_par.py``) without ``--clip``
runs :func:`train_demo`, an application of :mod:`par_prompt.training`: the training's
own entry point, with the demo's defaults (:data:`DEMO_DEFAULTS`: the synthetic data set,
a higher learning rate, fewer and shorter epochs) and the demo's backbones.
:func:`demo_backbones` writes a tiny CLIP (64 px, patch 8, width 64, 3 layers per tower,
a CLIP BPE tokenizer that keeps every word of the synthetic attribute sentences whole)
and a tiny one-layer ViT, and caches them (:mod:`par_prompt.cache`), keyed by a hash of
their settings and the package version; the synthetic data are cached the same way
(:func:`par_prompt.data.load_synthetic`).

**Pre-training: measured, and off by default.** PromptPAR tunes prompts on a frozen,
pre-trained CLIP, so the demo can give its tiny CLIP a short contrastive pre-training
(:func:`pretrain_contrastive`, ``DemoSettings.pretrain_steps > 0``,
``--demo-pretrain-steps``). We measured whether the demo needs it (2,000 training and 400
validation images, 14 epochs, the demo's recipe; benchmarks/RESULTS.md):

============================  ===================  ====================================
fusion                        random tiny CLIP     pre-trained tiny CLIP
============================  ===================  ====================================
MLP (``--fusion-layers 0``)   val mA 0.877         0.874 (1,200 steps), 0.816 (600 steps)
one ViT layer (``1``)         0.706                0.788 (1,200 steps)
============================  ===================  ====================================

The bottleneck is the *fusion* layer, not the CLIP: PromptPAR freezes a layer taken from a
ViT that has learned to attend (ImageNet ViT-B/16 in the paper), and a tiny random ViT
layer cannot pick a hat or boots out of ~100 tokens however it is scaled. With the
paper's Table VI fusion (a trainable MLP over the sequence) the frozen *random* CLIP
already reaches 0.877, so the demo runs without pre-training (pre-training lifted only the
global–local branch in our prototype runs, mA 0.60 → 0.73, and that branch is a training
signal, not the prediction).

Pre-training, when asked for, is CLIP's objective in the sigmoid form of SigLIP (Zhai et
al., 2023), on synthetic image–sentence pairs:

- images: synthetic pedestrians (:mod:`par_prompt.data.synthetic`) from their own seed
  stream, disjoint from the demo's train/validation/test splits, squared and resized like
  the model input, with the training augmentation;
- sentences: the attribute sentences ("A pedestrian wearing a hat", ...); an image and a
  sentence form a positive pair when the figure shows that attribute, a negative pair
  otherwise;
- image embedding: the mean of CLIP's projected output tokens (post-layernorm, visual
  projection), the tokens PromptPAR feeds to its fusion; sentence embedding: CLIP's
  pooled, projected text output;
- loss: binary cross-entropy on ``exp(logit_scale) · cos(image, sentence) + bias`` over
  every image–sentence pair of the batch; AdamW, linear warm-up, cosine decay.

The ViT's layer weights are drawn at the scale ``1 / sqrt(fan_in)`` (a trained layer's
per-unit scale) instead of transformers' ``initializer_range`` of 0.02, which suits a
width of 768: at width 64 a frozen layer that small passes almost nothing of the image on
to the text tokens, and with ``--fusion-layers 1`` validation mA then swung between 0.5
and 0.75 from epoch to epoch in our runs.

**Cache.** Under ``cache_dir`` (``$PAR_PROMPT_CACHE``, else ``~/.cache/par_prompt``), e.g.
``demo-backbones-3f2a…/{clip,vit,settings.json}`` and ``synthetic-…/``, each built in a
temporary directory and renamed into place (:func:`par_prompt.cache.cached_folder`).
Everything is deterministic for a given seed on a given machine (same torch version and
thread count).

Nothing happens at import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .cache import SETTINGS_FILE, cache_root, cached_folder

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_DEFAULTS",
    "DemoSettings",
    "demo_backbones",
    "demo_words",
    "pretrain_contrastive",
    "train_demo",
]

#: Seed-sequence entropy of the pre-training images: disjoint from make_synthetic's streams.
PRETRAIN_STREAM = 0x50524554
#: Part of the cache key: raised whenever the backbones built for the same settings change
#: (2: the tiny tokenizer is trained by the tokenizers library), so that a cache written by
#: an earlier build is never taken for the current one.
BACKBONES_REVISION = 2

#: The demo's defaults for the options that :data:`par_prompt.training.arguments.PAPER_DEFAULTS`
#: fills in a real run: synthetic data, a higher learning rate and fewer, shorter epochs so
#: that it learns in a few minutes. The data set's name is filled only when no ``--data-dir``
#: is given (data from ``--data-dir`` carry their own name, which the model card then uses). Its fusion is the paper's Table VI variant (a trainable
#: MLP over the sequence): a frozen fusion layer must come from a ViT that has learned to
#: attend (the paper takes ImageNet ViT-B/16's last layer), and the demo's tiny ViT is
#: random. Measured on the synthetic data (benchmarks/RESULTS.md): validation mA 0.877 with
#: --fusion-layers 0; 0.706 with 1 (0.788 on a pre-trained tiny CLIP).
DEMO_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"prompts_per_group": 4, "fusion_layers": 0},
    "data": {"dataset": "synthetic", "num_workers": 0},
    "training": {
        "output_dir": "outputs/demo",
        "epochs": 14,
        "batch_size": 32,
        "lr_head": 0.1,
        "lr_prompt": 0.05,
        "warmup_epochs": 1,
    },
}


@dataclass(frozen=True)
class DemoSettings:
    """Architecture and pre-training of the demo backbones (all part of the cache key)."""

    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    text_width: int = 64
    text_layers: int = 3
    text_heads: int = 4
    projection_dim: int = 64
    fusion_width: int = 64
    fusion_heads: int = 4
    seed: int = 0
    pretrain_images: int = 2000
    pretrain_steps: int = 0  # 0: no pre-training (see the module docstring); 1200 was measured
    pretrain_batch_size: int = 64
    pretrain_lr: float = 3e-3
    pretrain_weight_decay: float = 0.05
    pretrain_warmup_steps: int = 20
    fusion_weight_scale: str = "fan_in"  # or "default" (initializer_range 0.02)

    def key(self) -> str:
        """Hash of the settings, the package version and :data:`BACKBONES_REVISION`: the
        cache folder's name."""
        from . import __version__

        payload = json.dumps({"settings": asdict(self), "version": __version__, "revision": BACKBONES_REVISION},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def demo_words() -> list[str]:
    """Words of the synthetic attribute sentences, so the tiny tokenizer keeps each whole."""
    from .data.synthetic import SENTENCES

    return sorted({word for sentence in SENTENCES for word in re.findall(r"[a-z]+", sentence.lower())})


# ---------------------------------------------------------------------------- pre-training


def _pretraining_images(settings: DemoSettings):
    """uint8 (M, 3, S, S) images and int (M, 18) labels from the pre-training stream."""
    import numpy as np
    import torch
    from PIL import Image

    from .data.synthetic import ATTRIBUTES, draw_figure, sample_figure
    from .data.transforms import fit_to_square

    rng = np.random.default_rng(np.random.SeedSequence([PRETRAIN_STREAM, settings.seed]))
    images = np.empty((settings.pretrain_images, settings.image_size, settings.image_size, 3), dtype=np.uint8)
    labels = np.empty((settings.pretrain_images, len(ATTRIBUTES)), dtype=np.int64)
    for i in range(settings.pretrain_images):
        figure = sample_figure(rng)
        pixels = draw_figure(figure, (128, 64), rng)
        images[i] = fit_to_square(Image.fromarray(pixels), settings.image_size)
        labels[i] = [figure.labels[name] for name in ATTRIBUTES]
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def pretrain_contrastive(clip, tokenizer, settings: DemoSettings,
                         progress: Optional[Callable[[int, int, float], None]] = None) -> dict:
    """Sigmoid contrastive pre-training of ``clip`` (a ``CLIPModel``, in place) on synthetic
    image–sentence pairs (see the module docstring). Returns a summary: the final loss
    and the balanced accuracy of the pair predictions over the last batches."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from .data.synthetic import SENTENCES
    from .data.transforms import CLIP_MEAN, CLIP_STD, normalize, random_pad_crop_flip
    from .training.data import scaled_augment_pad

    images, labels = _pretraining_images(settings)
    sentences = tokenizer(list(SENTENCES), padding=True, return_tensors="pt")
    generator = torch.Generator().manual_seed(settings.seed)
    pad = scaled_augment_pad(settings.image_size)
    bias = torch.nn.Parameter(torch.tensor(-2.0))
    clip.train()
    clip.requires_grad_(True)
    params = [*clip.parameters(), bias]
    optimizer = torch.optim.AdamW(params, lr=settings.pretrain_lr, weight_decay=settings.pretrain_weight_decay)
    total, warmup = settings.pretrain_steps, settings.pretrain_warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    batch = settings.pretrain_batch_size
    recent_loss, recent_acc = [], []
    permutation, cursor = torch.randperm(len(images), generator=generator), 0
    for step in range(total):
        if cursor + batch > len(images):
            permutation, cursor = torch.randperm(len(images), generator=generator), 0
        index = permutation[cursor:cursor + batch]
        cursor += batch
        pixels = normalize(random_pad_crop_flip(images[index], pad, generator=generator), CLIP_MEAN, CLIP_STD)
        hidden = clip.vision_model(pixel_values=pixels).last_hidden_state
        image = clip.visual_projection(clip.vision_model.post_layernorm(hidden)).mean(dim=1)
        text = clip.text_projection(clip.text_model(**sentences).pooler_output)
        logits = clip.logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t() + bias
        targets = labels[index].float()
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))
            predicted = logits > 0
            positives, negatives = targets == 1, targets == 0
            recall = (predicted & positives).sum() / positives.sum().clamp(min=1)
            specificity = (~predicted & negatives).sum() / negatives.sum().clamp(min=1)
        loss_value = loss.item()
        recent_loss = (recent_loss + [loss_value])[-50:]
        recent_acc = (recent_acc + [float(recall + specificity) / 2])[-50:]
        if progress is not None:
            progress(step + 1, total, loss_value)
    clip.eval()
    clip.requires_grad_(False)
    return {"final_loss": float(np.mean(recent_loss)), "balanced_pair_accuracy": float(np.mean(recent_acc)),
            "steps": total, "batch_size": batch, "images": len(images)}


# ------------------------------------------------------------------------------- backbones


def demo_backbones(cache_dir: Union[None, str, os.PathLike] = None, settings: DemoSettings = DemoSettings(),
                   *, verbose: bool = True):
    """Paths of the demo backbones, building and caching them on first use.

    Returns :class:`par_prompt.tiny_backbones.TinyBackbones` (``clip``, ``vit``: directories that
    ``PromptPARModel.from_backbones`` loads offline). The first call writes the tiny
    random CLIP and ViT (:func:`par_prompt.tiny_backbones.write_tiny_backbones`), rescales the
    ViT layer, pre-trains the CLIP when ``settings.pretrain_steps > 0``
    (:func:`pretrain_contrastive`) and publishes the folder atomically; later calls with
    the same settings and package version return the cached paths at once.
    """
    from .tiny_backbones import TinyBackbones

    folder = cache_root(cache_dir) / f"demo-backbones-{settings.key()}"
    if verbose and (folder / SETTINGS_FILE).is_file():
        logger.info("Using the cached demo backbones in %s", folder)
    cached_folder(folder, lambda tmp: _build_backbones(tmp, settings, verbose))
    return TinyBackbones(clip=str(folder / "clip"), vit=str(folder / "vit"))


def _build_backbones(directory: Path, settings: DemoSettings, verbose: bool) -> None:
    import torch
    from transformers import AutoTokenizer, CLIPModel

    from . import __version__
    from .tiny_backbones import write_tiny_backbones

    started = time.perf_counter()
    paths = write_tiny_backbones(
        directory, image_size=settings.image_size, patch_size=settings.patch_size,
        vision_width=settings.vision_width, vision_layers=settings.vision_layers, vision_heads=settings.vision_heads,
        text_width=settings.text_width, text_layers=settings.text_layers, text_heads=settings.text_heads,
        projection_dim=settings.projection_dim, fusion_width=settings.fusion_width, fusion_layers=1,
        fusion_heads=settings.fusion_heads, seed=settings.seed, extra_words=demo_words(),
    )
    if settings.fusion_weight_scale == "fan_in":
        rescale_fusion_weights(Path(paths.vit), settings.seed)
    elif settings.fusion_weight_scale != "default":
        raise ValueError(f"fusion_weight_scale must be 'fan_in' or 'default', got {settings.fusion_weight_scale!r}")
    summary: dict = {"steps": 0}
    if settings.pretrain_steps > 0:
        clip = CLIPModel.from_pretrained(paths.clip)
        tokenizer = AutoTokenizer.from_pretrained(paths.clip)
        bar = _Bar(settings.pretrain_steps, "Pre-training the demo CLIP", verbose)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            summary = pretrain_contrastive(clip, tokenizer, settings, progress=bar)
        bar.close()
        clip.save_pretrained(paths.clip)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    record = {"settings": asdict(settings), "version": __version__, "pretraining": summary}
    (directory / SETTINGS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    if verbose and settings.pretrain_steps > 0:
        logger.info("Demo CLIP pre-trained in %.0f s (sigmoid contrastive loss %.3f, balanced pair accuracy %.2f)",
                    summary["seconds"], summary["final_loss"], summary["balanced_pair_accuracy"])


def rescale_fusion_weights(vit_dir: Path, seed: int) -> None:
    """Redraw the linear weights of the ViT's encoder layers from N(0, 1/fan_in), in place.

    Works on ``model.safetensors`` as :func:`par_prompt.tiny_backbones.write_tiny_backbones`
    writes it (the Hub key layout), so the folder still loads like the real checkpoint.
    Biases, layer norms, embeddings and the classifier are left as they are.
    """
    import torch
    from safetensors.torch import save_file

    from .fileio import read_safetensors

    path = vit_dir / "model.safetensors"
    state = read_safetensors(path, "demo ViT")
    generator = torch.Generator().manual_seed(seed + 1)
    for name in sorted(state):
        if ".encoder.layer." in name and name.endswith(".weight") and state[name].ndim == 2:
            fan_in = state[name].shape[1]
            state[name] = torch.randn(state[name].shape, generator=generator) * fan_in ** -0.5
    save_file(state, str(path), metadata={"format": "pt"})


class _Bar:
    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from .progress import progress_bar

            self._bar = progress_bar(total=total, desc=description, unit="step", leave=False)

    def __call__(self, step: int, total: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.3f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ------------------------------------------------------------------------------ the run


def _backbone_source(training_args, verbose: bool) -> tuple[str, str]:
    """The demo's :data:`~par_prompt.training.loop.BackboneSource`: its cached backbones,
    pre-trained for ``--demo-pretrain-steps``, under ``--demo-cache-dir``."""
    settings = DemoSettings(pretrain_steps=training_args.demo_pretrain_steps)
    backbones = demo_backbones(training_args.demo_cache_dir, settings, verbose=verbose)
    return backbones.clip, backbones.vit


def train_demo(model_args=None, data_args=None, training_args=None, *, sources: Optional[dict[str, Any]] = None):
    """Run the demo: :func:`par_prompt.training.train` with :data:`DEMO_DEFAULTS` and the
    demo backbones (see the module docstring); every option can still be set. Returns the
    :class:`~par_prompt.training.TrainingResult`."""
    from .training import DataArguments, ModelArguments, TrainingArguments, train

    model_args = model_args or ModelArguments()
    if model_args.clip is not None:
        raise ValueError(f"The demo brings its own backbones; drop --clip {model_args.clip} to run it, or train "
                         f"with par_prompt.training.train.")
    return train(model_args, data_args or DataArguments(), training_args or TrainingArguments(), sources=sources,
                 defaults=DEMO_DEFAULTS, backbones=_backbone_source)
