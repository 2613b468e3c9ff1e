"""Deployment: export (ONNX, OpenVINO IR), inference runtimes (PyTorch, ONNX Runtime, OpenVINO)
and the backend names built on them, graph optimisation and INT8 (ONNX Runtime QDQ, NNCF),
timing.

May import: ``utils.data`` (for ``utils.data.preprocess``: the photo reading and letterbox
every runtime's inputs go through), ``utils.cli``, ``utils.metrics``, ``nets``.
"""
