"""Inference: ``predict`` on raw images, :class:`PromptPARPredictor` (a model with its
processor), the ``pedestrian-attribute-recognition`` pipeline task, attention pictures,
and the ``predict`` / ``visualize`` commands."""

from .pipeline import PedestrianAttributeRecognitionPipeline, register_pipeline
from .predict import (
           AttributePrediction,
           ImageInputError,
           NonFiniteOutputError,
           check_image_processor,
           iter_predictions,
           predict,
           predict_probabilities,
)
from .predictor import PromptPARPredictor

__all__ = ["AttributePrediction", "ImageInputError", "NonFiniteOutputError", "PedestrianAttributeRecognitionPipeline",
           "PromptPARPredictor", "check_image_processor", "iter_predictions", "predict", "predict_probabilities",
           "register_pipeline"]
