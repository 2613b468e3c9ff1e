"""Library code behind the scripts, in one subpackage per role.

Layers, lowest first; each may import only what its line names:

- ``utils.fileio``: atomic file writes and the stale temporary files of killed writes. Imports
  nothing of the project; every ``utils`` module may import it.
- ``utils.cli``, ``utils.metrics``: the two plain modules (command-line configs;
  confusion-matrix scores). They import nothing of the project but ``utils.fileio``.
- ``nets`` (the models and the checkpoint format) sits beside them and never imports ``utils``.
- ``utils.data``: photo reading and letterboxing (``preprocess``), data sets, masks,
  augmentation, synthetic oranges, annotation converters. Imports the plain modules.
- ``utils.training``: the training loop, tasks, losses, distillation, schedules, logging,
  torchrun helpers. Imports ``utils.data`` and ``nets``.
- ``utils.deploy``: export, runtimes (ONNX Runtime, OpenVINO), quantisation, timing.
  Imports ``utils.data`` (its ``preprocess``) and ``nets``.
- ``utils.inference``: the predictor, evaluation and drawing. Imports ``utils.deploy``,
  ``utils.data`` and ``nets``.
- ``utils.line``: the sorting line (video pipeline, conveyor video, grading). Imports
  ``utils.inference``, ``utils.deploy``, ``utils.data`` and ``nets``.

``tests/test_architecture.py`` checks these rules on every import, including imports inside
functions, and that the deployment path (what runs an exported model on a sorting-line box)
imports no torch at module level.
"""
