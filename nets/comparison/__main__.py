"""Print the comparison models' sizes as a markdown table: parameters and thop GMACs (what the
FastSegFormer paper reports as "GFLOPs"), without and with the training-only auxiliary heads,
next to the figures of the original comparison code (DESIGN.md).

    python -m nets.comparison                 # all ten models (about 15 s on 2 CPU cores)
    python -m nets.comparison pidnet_s enet   # some of them
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import tyro
from tyro.conf import Positional

from nets.comparison import COMPARISON_MODELS
from nets.profile import count_params, thop_profile

# params (M) / thop GMACs of the original comparison code (4 classes at 224; BiSeNetV2: 3 at 416)
ORIGINAL = {
    "enet": (0.36, 0.46),
    "fanet18": (13.82, 1.17),
    "fanet34": (23.92, 1.65),
    "fast_scnn": (1.14, 0.17),
    "swiftnet_rn18": (11.79, 2.49),
    "bisenet_r18": (13.24, 2.84),
    "bisenetv2": (3.62, 8.53),
    "pidnet_s": (7.62, 1.15),
    "pidnet_m": (28.54, 4.30),
    "pidnet_l": (36.94, 6.63),
}


@dataclass
class Config:
    # nets never imports utils, so this entry point calls tyro itself (as utils.cli does)
    names: Positional[tuple[Literal[tuple(COMPARISON_MODELS)], ...]] = ()  # models (empty: all)


def main(argv: Sequence[str] | None = None) -> None:
    names = tyro.cli(Config, args=argv, description=__doc__).names
    torch.set_num_threads(1)
    print(
        "| model | input, classes | params | params + aux heads | GMACs | GMACs + aux heads "
        "| original code |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names or list(COMPARISON_MODELS):
        classes, size = (3, 416) if name == "bisenetv2" else (4, 224)
        model = COMPARISON_MODELS[name](num_classes=classes)
        params, params_aux = count_params(model, False) / 1e6, count_params(model) / 1e6
        macs = thop_profile(model, size)[0] / 1e9
        macs_aux = thop_profile(model, size, with_aux=True)[0] / 1e9
        p_ref, g_ref = ORIGINAL[name]
        print(
            f"| {name} | {size}, {classes} | {params:.2f}M | {params_aux:.2f}M | {macs:.2f} "
            f"| {macs_aux:.2f} | {p_ref:.2f}M / {g_ref:.2f} |"
        )


if __name__ == "__main__":
    main()
