"""Folder of the ``par_metrics`` ``evaluate`` script; load it with ``par_prompt.metrics.load_evaluate_metric()``."""
