"""Inference: ``predict`` on raw images, the ``pedestrian-attribute-recognition``
pipeline task, attention pictures, and the ``predict`` / ``visualize`` commands."""

from .pipeline import PedestrianAttributeRecognitionPipeline, register_pipeline
from .predict import (
           AttributePrediction,
           ImageInputError,
           iter_predictions,
           predict,
           predict_probabilities,
)

__all__ = ["AttributePrediction", "ImageInputError", "PedestrianAttributeRecognitionPipeline", "iter_predictions",
           "predict", "predict_probabilities", "register_pipeline"]
