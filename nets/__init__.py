"""Models of the FastSegFormer framework: ``build_model(name, ...)`` over the ``MODELS`` dict.

Students FastSegFormer-P/-E (``nets/fastsegformer.py``), the Swin-T-Att-UNet teacher and the
paper's comparison models; checkpoint loading for every published layout in
``nets/checkpoint.py``.
"""

from nets.checkpoint import LoadReport, load_checkpoint, model_from_checkpoint
from nets.registry import MODELS, build_model, set_backbone_frozen

__all__ = [
    "MODELS",
    "LoadReport",
    "build_model",
    "load_checkpoint",
    "model_from_checkpoint",
    "set_backbone_frozen",
]
