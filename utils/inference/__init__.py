"""Inference: the one predictor, evaluation on a split, drawing results.

May import: ``utils.deploy``, ``utils.data``, ``utils.preprocess``, ``utils.cli``,
``utils.metrics``, ``nets``.
"""
