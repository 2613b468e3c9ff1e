"""Library code behind the scripts, in one subpackage per role.

Layers, lowest first; a package may import the ones above it in this list, never below:

- ``utils.fileio``: atomic file writes and the stale temporary files of killed writes. Imports
  nothing of the project; every ``utils`` module may import it.
- ``utils.cli``, ``utils.preprocess``, ``utils.metrics``: plain modules that import nothing of
  the project but ``utils.fileio`` (command-line configs; image reading and letterboxing;
  confusion-matrix scores).
- ``nets`` (the models and the checkpoint format) sits beside them and never imports ``utils``.
- ``utils.data``: data sets, masks, augmentation, synthetic oranges, annotation converters.
- ``utils.training``: the training loop, tasks, losses, distillation, schedules, logging,
  torchrun helpers. Imports ``utils.data`` and ``nets``.
- ``utils.deploy``: export, runtimes (ONNX Runtime, OpenVINO), quantisation, timing.
  Imports ``nets``.
- ``utils.inference``: the predictor, evaluation and drawing. Imports ``utils.deploy``,
  ``utils.data`` and ``nets``.
- ``utils.line``: the sorting line (video pipeline, conveyor video, grading). Imports
  ``utils.inference``, ``utils.deploy`` and ``utils.data``.

``tests/test_architecture.py`` checks these rules on every import, including imports inside
functions.
"""
