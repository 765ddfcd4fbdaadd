"""PAR metrics (mA, mAP, Acc, Prec, Rec, F1) as an ``evaluate`` metric.

This script only adapts ``par_prompt.metrics.compute_par_metrics`` to the ``evaluate``
interface; the formulas live in ``par_prompt.metrics`` and nowhere else. Load it with
``par_prompt.metrics.load_evaluate_metric()`` or ``evaluate.load(<this folder>)``.
"""

import datasets
import evaluate
import numpy as np

from par_prompt.metrics import compute_par_metrics

_CITATION = """\
@article{wang2023promptpar,
  title   = {Pedestrian Attribute Recognition via CLIP based Prompt Vision-Language Fusion},
  author  = {Wang, Xiao and Jin, Jiandong and Li, Chenglong and Tang, Jin and Zhang, Cheng and Wang, Wei},
  journal = {arXiv preprint arXiv:2312.10692},
  year    = {2023}
}
"""

_DESCRIPTION = """\
The standard pedestrian attribute recognition (PAR) metrics. Predictions are per-attribute
probabilities, references are multi-hot labels where 2 marks an uncertain entry that is
left out of every count. An entry is predicted positive when its probability is strictly
greater than the threshold. Label-based: mA, the mean over attributes of
(positive recall + negative recall) / 2, mAP, the mean of the per-attribute average
precision, and per-attribute precision and F1. An attribute without certain positives or
without certain negatives gets None ("n/a") for the scores that need them, and every
mean over attributes is over the attributes that have both. Instance-based, per sample
then averaged: accuracy |P∩G|/|P∪G|, precision |P∩G|/|P|, recall |P∩G|/|G| and F1; any
other zero denominator counts as 0. All scores are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): (num_samples, num_attributes) probabilities
        in [0, 1]; apply a sigmoid to logits first.
    references (`list` of `list` of `int`): (num_samples, num_attributes) labels,
        0 = negative, 1 = positive, 2 = uncertain (ignored).
    threshold (`float` or `list` of `float`, defaults to 0.5): one threshold, or one per
        attribute, each in [0, 1].
    attribute_names (`list` of `str`, optional): names reported back with the
        per-attribute recalls.
Returns:
    A dict with `mA`, `mAP`, `accuracy`, `precision`, `recall`, `f1` (fractions),
    `threshold`, per-attribute `positive_recall` / `negative_recall` /
    `attribute_precision` / `attribute_f1` / `average_precision` (None where "n/a") /
    `num_positives` / `num_negatives`, `mean_attribute_precision`, `mean_attribute_f1`,
    `num_attributes_scored`, `attribute_names`, `num_samples`, `num_uncertain`,
    `num_attributes_without_positives`, `num_attributes_without_negatives` and
    `f1_of_means` (F1 of the averaged precision and recall, for comparison).
Examples:
    >>> metric = par_prompt.metrics.load_evaluate_metric()
    >>> out = metric.compute(predictions=[[0.9, 0.2], [0.4, 0.7]], references=[[1, 0], [0, 1]])
    >>> round(out["mA"], 2)
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ParMetrics(evaluate.Metric):
    """``evaluate`` wrapper around ``par_prompt.metrics.compute_par_metrics``."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2312.10692"],
        )

    def _compute(self, predictions, references, threshold=0.5, attribute_names=None):
        return compute_par_metrics(
            np.asarray(predictions, dtype=np.float64),
            np.asarray(references),
            threshold=threshold,
            attribute_names=attribute_names,
        ).as_dict()
