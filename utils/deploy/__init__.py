"""Deployment: inference runtimes (ONNX Runtime, OpenVINO: ``runtimes``, no torch), the backend
names and ``auto``'s choice (``backends``, no torch), timing; and the torch side: the PyTorch
runtime (``torch_runtime``), building a backend from a PyTorch model (``build``), export (ONNX,
OpenVINO IR), graph optimisation and INT8 (ONNX Runtime QDQ, NNCF).

May import: ``utils.data`` (for ``utils.data.preprocess``: the photo reading and letterbox
every runtime's inputs go through), ``utils.cli``, ``utils.metrics``, ``nets``.
"""
