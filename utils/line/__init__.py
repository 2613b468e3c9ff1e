"""The sorting line: the threaded video pipeline and its benchmark, the synthetic conveyor
video, fruit grading.

May import: ``utils.inference``, ``utils.deploy``, ``utils.data``,
``utils.cli``, ``utils.metrics``, ``nets``.
"""
