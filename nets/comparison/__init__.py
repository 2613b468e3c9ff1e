"""The paper's comparison models (FastSegFormer, Cai et al. 2024), one file per family.

Each factory takes ``num_classes`` (and an optional ``pretrained``) and returns a
``ComparisonModel``: logits at the input size from ``model(x)``, auxiliary outputs from
``model(x, return_aux=True)`` with their weighted losses from ``model.aux_losses``, and feature
maps from ``model(x, return_features=True)``. Sizes and training losses: docs/comparison_models.md.
"""

from nets.comparison.bisenet import bisenet_r18
from nets.comparison.bisenetv2 import bisenetv2
from nets.comparison.common import ComparisonModel
from nets.comparison.enet import enet
from nets.comparison.fanet import fanet18, fanet34
from nets.comparison.fast_scnn import fast_scnn
from nets.comparison.pidnet import pidnet_l, pidnet_m, pidnet_s
from nets.comparison.swiftnet import swiftnet_rn18

# registry name -> factory (nets/registry.py adds these to MODELS)
COMPARISON_MODELS = {
    "enet": enet,
    "fanet18": fanet18,
    "fanet34": fanet34,
    "fast_scnn": fast_scnn,
    "swiftnet_rn18": swiftnet_rn18,
    "bisenet_r18": bisenet_r18,
    "bisenetv2": bisenetv2,
    "pidnet_s": pidnet_s,
    "pidnet_m": pidnet_m,
    "pidnet_l": pidnet_l,
}

__all__ = ["COMPARISON_MODELS", "ComparisonModel", *COMPARISON_MODELS]
