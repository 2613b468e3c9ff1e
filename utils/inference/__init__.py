"""Inference: the one way to open a model file (``open_model``), the one predictor (``predictor``,
numpy and OpenCV: it runs an exported model without torch), the predictor of a PyTorch model and
its backend choice and export (``model_predictor``, the torch side), INT8 calibration photos,
evaluation on a split, drawing results, pre-annotation (``prelabel``: drafts to correct, ranked
by the model's uncertainty).

May import: ``utils.deploy``, ``utils.data``, ``utils.cli``,
``utils.metrics``, ``nets``.
"""
