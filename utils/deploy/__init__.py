"""Deployment: export (ONNX, OpenVINO IR), inference runtimes (PyTorch, ONNX Runtime, OpenVINO)
and the backend names built on them, graph optimisation and INT8 (ONNX Runtime QDQ, NNCF),
timing.

May import: ``utils.preprocess``, ``utils.cli``, ``utils.metrics``, ``nets``.
"""
