"""The transformers pipeline task ``pedestrian-attribute-recognition``.

    >>> from transformers import pipeline
    >>> recognise = pipeline("pedestrian-attribute-recognition", model="org/promptpar-pa100k")
    >>> recognise("walker.jpg")            # one dict
    >>> recognise(["a.jpg", "https://example.com/b.png"], batch_size=8, threshold=0.6)   # a list of dicts

Inputs: a file path, an ``http(s)://`` URL, a base64-encoded image (or a
``data:image/...;base64,`` URI), a PIL image, a numpy array or a tensor, or a list of
them. URLs and base64 go through transformers' own ``load_image``; files are checked
(a regular file, not a FIFO) and decoded upright by their EXIF orientation.

Each result is a dict::

    {"attributes": ["Female", "Trousers"],          # above the threshold, in attribute order
     "probabilities": {"Female": 0.91, "Hat": 0.03, ...},   # every attribute
     "threshold": 0.5,                               # or one value per attribute
     "source": "walker.jpg",                         # the file or URL; None otherwise
     "top_k": [{"attribute": "Female", "probability": 0.91}, ...]}   # only with top_k=K

``top_k=K`` adds the K most probable attributes, most probable first, whatever the
threshold. Loading, preprocessing and thresholds are those of
:func:`par_prompt.inference.predict`: the model's processor (loaded from the model's
folder, as transformers pipelines load theirs; or passed as ``processor=``), its stored
thresholds unless ``threshold`` is given. (For the plain ``[{"label", "score"}]`` list of
transformers, use the stock ``image-classification`` pipeline: PromptPAR models load
with ``AutoModelForImageClassification``, scores are per-attribute sigmoids.)

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
    """Pipeline over a :class:`~par_prompt.PromptPARModel` and its
    :class:`~par_prompt.PromptPARProcessor`: images in, attributes out (the dict the
    module docstring shows).

    Call arguments: ``threshold`` (float in [0, 1], or one per attribute; default: the
    model's stored thresholds), ``top_k`` (int >= 0: add the K most probable attributes),
    ``timeout`` (seconds to wait for a URL) and the usual ``batch_size`` /
    ``num_workers``. An unreadable input raises
    :class:`~par_prompt.inference.ImageInputError` naming it; an image processor sized for
    another model is refused when the pipeline is built; a NaN probability raises
    :class:`~par_prompt.inference.NonFiniteOutputError`.
    """

    # Like transformers' multimodal pipelines: the processor is loaded from the model's
    # folder (pipeline(task, model=DIR)), or given (processor=...); its image processor
    # serves the batching collator too.
    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, *args: Any, **kwargs: Any) -> None:
        processor = kwargs.get("processor")
        if processor is None and kwargs.get("image_processor") is None:
            raise ValueError(
                f"The {TASK!r} pipeline needs the model's processor: pass processor=PromptPARProcessor."
                "from_pretrained(MODEL), or give the model as a folder or Hub id (its processor is loaded from there)."
            )
        check_image_processor(model, kwargs.get("image_processor") or processor)  # before any image is read
        super().__init__(model, *args, **kwargs)

    def __call__(self, inputs: Any = None, **kwargs: Any):
        """One result dict per image (a list for a list of images); an empty list gives []."""
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            self._sanitize_parameters(**kwargs)  # bad options are still refused
            return []
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, threshold: Any = None, top_k: Any = None, timeout: Any = None, **kwargs: Any):
        if kwargs:
            raise TypeError(f"{TASK} pipeline got unexpected arguments: {sorted(kwargs)}")
        preprocess, postprocess = {}, {}
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
            preprocess["timeout"] = float(timeout)
        if threshold is not None:
            resolve_thresholds(self.model.config, threshold)  # fail early on a bad value
            postprocess["threshold"] = threshold
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
                raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
            postprocess["top_k"] = top_k
        return preprocess, {}, postprocess

    def get_inference_context(self):
        return torch.inference_mode

    def preprocess(self, image: Any, timeout: Optional[float] = None) -> dict[str, Any]:
        processor = check_image_processor(self.model, self.image_processor)  # its settings may have changed
        # one image at a time, without its position in the caller's list: errors name its source only
        pixel_values = preprocess_image(processor, image, None, timeout=timeout).unsqueeze(0)
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
