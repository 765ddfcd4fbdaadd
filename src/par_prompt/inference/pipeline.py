"""The transformers pipeline task ``pedestrian-attribute-recognition``.

    >>> from transformers import pipeline
    >>> recognise = pipeline("pedestrian-attribute-recognition", model="org/promptpar-pa100k")
    >>> recognise("walker.jpg")            # one dict
    >>> recognise(["a.jpg", "b.png"], batch_size=8, threshold=0.6)   # a list of dicts

Each result is a dict like :meth:`AttributePrediction.to_dict` without ``index``:
``attributes`` (those above the threshold), ``probabilities`` (every attribute),
``threshold`` and ``source`` (the file, when the input was a path); with ``top_k=K``
also ``top_k``, the K most probable attributes (``{"attribute", "probability"}``, most
probable first) whatever the threshold.
Loading, preprocessing and thresholds are those of :func:`par_prompt.inference.predict`
(the model's own image processor, its stored thresholds unless ``threshold`` is given).

:func:`register_pipeline` adds the task to transformers' registry; it is idempotent
and cheap (no model, no I/O).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .predict import (
    check_image_processor,
    describe_source,
    preprocess_image,
    resolve_thresholds,
    to_predictions,
)

TASK = "pedestrian-attribute-recognition"


class PedestrianAttributeRecognitionPipeline(Pipeline):
    """Pipeline over a :class:`~par_prompt.PromptPARModel`: images in, attributes out.

    Call arguments: ``threshold`` (float in [0, 1], or one per attribute; default: the
    model's stored thresholds), ``top_k`` (int >= 0: add the K most probable attributes)
    and the usual ``batch_size`` / ``num_workers``. An unreadable input raises
    :class:`~par_prompt.inference.ImageInputError` naming it; an image processor sized for
    another model is refused when the pipeline is built; a NaN probability raises
    :class:`~par_prompt.inference.NonFiniteOutputError`.
    """

    # The model carries its own image processor and tokenizer; nothing else to load.
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, *args: Any, **kwargs: Any) -> None:
        if getattr(model, "image_processor", None) is None:
            raise ValueError(
                f"The {TASK!r} pipeline needs a PromptPARModel with its image processor attached "
                "(PromptPARModel.from_pretrained attaches the saved one)."
            )
        # The image processor doubles as the batching collator's "feature extractor".
        if kwargs.get("image_processor") is None:
            kwargs["image_processor"] = model.image_processor
        check_image_processor(model, kwargs["image_processor"])  # before any image is read
        super().__init__(model, *args, **kwargs)

    def _sanitize_parameters(self, threshold: Any = None, top_k: Any = None, **kwargs: Any):
        if kwargs:
            raise TypeError(f"{TASK} pipeline got unexpected arguments: {sorted(kwargs)}")
        postprocess = {}
        if threshold is not None:
            resolve_thresholds(self.model.config, threshold)  # fail early on a bad value
            postprocess["threshold"] = threshold
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
                raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
            postprocess["top_k"] = top_k
        return {}, {}, postprocess

    def get_inference_context(self):
        return torch.inference_mode

    def preprocess(self, image: Any) -> dict[str, Any]:
        processor = check_image_processor(self.model, self.image_processor)  # its settings may have changed
        pixel_values = preprocess_image(processor, image, 0).unsqueeze(0)
        return {"pixel_values": pixel_values, "source": [describe_source(image)]}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        pixel_values = model_inputs["pixel_values"].to(dtype=self.model.dtype)
        logits = self.model(pixel_values=pixel_values, compute_gl_logits=False, training=False).logits  # as predict
        return {"probabilities": torch.sigmoid(logits.float()), "source": model_inputs["source"]}

    def postprocess(self, model_outputs: dict[str, Any], threshold: Optional[Any] = None,
                    top_k: Optional[int] = None) -> dict[str, Any]:
        thresholds, shown = resolve_thresholds(self.model.config, threshold)
        probabilities = model_outputs["probabilities"].reshape(-1, self.model.config.num_attributes)
        source = model_outputs["source"]
        source = source[0] if isinstance(source, list) else source
        (prediction,) = to_predictions(self.model.config, probabilities, thresholds, shown, [(0, source)])
        result = prediction.to_dict()
        del result["index"]
        if top_k is not None:
            result["top_k"] = [{"attribute": name, "probability": p} for name, p in prediction.top(top_k)]
        return result


def register_pipeline() -> None:
    """Register the ``pedestrian-attribute-recognition`` task (idempotent, no I/O)."""
    from ..modeling import PromptPARModel

    registered = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if registered is not None and registered.get("impl") is PedestrianAttributeRecognitionPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=PedestrianAttributeRecognitionPipeline, pt_model=PromptPARModel, type="image"
    )
