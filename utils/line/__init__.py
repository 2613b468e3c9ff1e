"""The sorting line: the threaded video pipeline, the synthetic conveyor video, fruit grading.

May import: ``utils.inference``, ``utils.deploy``, ``utils.data``, ``utils.preprocess``,
``utils.cli``, ``utils.metrics``, ``nets``.
"""
