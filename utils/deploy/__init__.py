"""Deployment: export (ONNX), inference runtimes, graph optimisation and INT8, timing.

May import: ``utils.preprocess``, ``utils.cli``, ``utils.metrics``, ``nets``.
"""
