"""Models of the FastSegFormer framework: ``build_model(name, ...)`` over the ``MODELS`` dict.

Students FastSegFormer-P/-E (``nets/fastsegformer.py``), the Swin-T-Att-UNet teacher and the
paper's comparison models; the checkpoint format, its safe reader and writer, and loading
for every published layout in ``nets/checkpoint``.
"""

from nets.checkpoint import CheckpointError, LoadReport, load_checkpoint
from nets.registry import MODELS, build_model, model_from_checkpoint, set_backbone_frozen

__all__ = [
    "MODELS",
    "CheckpointError",
    "LoadReport",
    "build_model",
    "load_checkpoint",
    "model_from_checkpoint",
    "set_backbone_frozen",
]
