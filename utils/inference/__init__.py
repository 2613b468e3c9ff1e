"""Inference: the one predictor (and its backend choice), INT8 calibration photos, evaluation on
a split, drawing results.

May import: ``utils.deploy``, ``utils.data``, ``utils.cli``,
``utils.metrics``, ``nets``.
"""
