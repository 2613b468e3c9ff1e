"""Training: the one loop, its tasks (supervised, distillation), losses, schedules, logging.

May import: ``utils.data``, ``utils.preprocess``, ``utils.cli``, ``utils.metrics``, ``nets``.
"""
