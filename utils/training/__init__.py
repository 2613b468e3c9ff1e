"""Training: the run path of the training scripts (run.py), its config (config.py), the one loop
(trainer.py), its tasks (supervised, distillation), losses, optimisers, schedules, logging, run
folders and --resume auto (run_dir.py), stop signals (signals.py).

May import: ``utils.data``, ``utils.cli``, ``utils.metrics``, ``nets``.
"""
