"""``PromptPARPredictor``: a PromptPAR model and its processor, ready to predict.

    from par_prompt.inference import PromptPARPredictor

    predictor = PromptPARPredictor.from_pretrained("org/promptpar-pa100k")
    predictions = predictor.predict(["walker.jpg"])       # AttributePrediction records

The PyTorch counterpart of :class:`par_prompt.onnx.ONNXPromptPARPredictor` (same
``predict`` / ``iter_predictions``, same records): the model
(:class:`~par_prompt.PromptPARModel`) holds the weights, the processor
(:class:`~par_prompt.PromptPARProcessor`) how images become its input; the predictor
pairs them, checked, and runs :func:`par_prompt.inference.predict`.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from .predict import check_image_processor, iter_predictions, predict

__all__ = ["PromptPARPredictor"]


class PromptPARPredictor:
    """A :class:`~par_prompt.PromptPARModel` with its :class:`~par_prompt.PromptPARProcessor`.

    Build it with :meth:`from_pretrained`, or from a model and a processor you hold. The
    processor's image processor is checked against the model when the predictor is
    built (valid settings, the CLIP's image size).
    """

    def __init__(self, model, processor) -> None:
        check_image_processor(model, processor)
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *,
        subfolder: str = "",
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        token: Union[None, bool, str] = None,
        local_files_only: bool = False,
        clip_name_or_path: Optional[str] = None,
        **model_kwargs: Any,
    ) -> "PromptPARPredictor":
        """The model and the processor of a saved folder or Hub repository: the processor
        first (quick, and it checks its files against the model's config.json), then
        the model. ``model_kwargs`` (``dtype``, ``device_map``, ``device``,
        ``fusion_name_or_path``, ...) go to ``PromptPARModel.from_pretrained``."""
        from ..modeling import PromptPARModel, PromptPARProcessor

        located = dict(subfolder=subfolder, revision=revision, cache_dir=cache_dir, token=token,
                       local_files_only=local_files_only, clip_name_or_path=clip_name_or_path)
        download = {key: model_kwargs[key] for key in ("force_download", "proxies") if key in model_kwargs}
        processor = PromptPARProcessor.from_pretrained(pretrained_model_name_or_path, **located, **download)
        model = PromptPARModel.from_pretrained(pretrained_model_name_or_path, **located, **model_kwargs)
        return cls(model, processor)

    @property
    def config(self):
        return self.model.config

    @property
    def attributes(self) -> list[str]:
        return list(self.model.config.attributes)

    @property
    def image_processor(self):
        """The processor's image processor (what the ONNX predictor calls its own)."""
        return self.processor.image_processor

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model.name_or_path!r}, attributes={self.config.num_attributes}, "
                f"device={str(self.model.device)!r}, dtype={self.model.dtype})")

    def predict(self, images, threshold=None, batch_size: int = 32, *, return_errors: bool = False):
        """Attribute predictions for raw images; see :func:`par_prompt.inference.predict`."""
        return predict(self.model, images, threshold=threshold, batch_size=batch_size, processor=self.processor,
                       return_errors=return_errors)

    def iter_predictions(self, images, threshold=None, batch_size: int = 32, *, return_errors: bool = False):
        """Like :meth:`predict`, one result at a time; see :func:`par_prompt.inference.iter_predictions`."""
        return iter_predictions(self.model, images, threshold=threshold, batch_size=batch_size,
                                processor=self.processor, return_errors=return_errors)
