"""Parameters and GFLOPs of the registry models, in the paper's convention.

    python model_flop_params.py                                  # every model, default size
    python model_flop_params.py --models fastsegformer_p fastsegformer_e
    python model_flop_params.py --models fastsegformer_p --option pyramid=ppm irb=false
    python model_flop_params.py --models swin_t_att_unet --input-size 224 --json

"GFLOPs" is what thop counts (multiply-accumulates, per image, batch 1), the figure the
FastSegFormer paper (Cai et al., 2024) reports as GFLOPs. ``params_m`` is thop's parameter
count, which (like the paper) leaves out parameters of layers thop does not hook: norm layers
other than BatchNorm/LayerNorm/InstanceNorm (PoolFormer's GroupNorms) and bare parameters
(layer scales, attention biases). ``params_all_m`` counts every parameter. See
docs/models.md for the numbers and why they differ.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

import nets
from utils.cli import parse_config


@dataclass
class Config:
    models: tuple[str, ...] = ()  # registry names to count (empty: every model in nets.MODELS)
    input_size: int | None = None  # square input size (None: each model's default_input_size)
    num_classes: int = 4  # classes of the output layer (the paper: 4)
    option: tuple[str, ...] = ()  # model options key=value for every model, e.g. pyramid=ppm
    json: bool = False  # print JSON [{"model", "input_size", "params_m", "gflops", ...}]


def _thop_custom_ops() -> dict[type, object]:
    """Count timm's fused BatchNorm+activation like the plain BatchNorm2d it replaces.

    The original backbones use ``nn.BatchNorm2d``, which thop counts (2 ops per element and
    its parameters); timm's ``BatchNormAct2d`` is a subclass thop does not recognise.
    """
    from thop.vision.basic_hooks import count_normalization
    from timm.layers import BatchNormAct2d

    return {BatchNormAct2d: count_normalization}


def count(model: nn.Module, input_size: int) -> dict[str, float]:
    """thop MACs and parameters of `model` on one (1, 3, S, S) input; `model` is untouched
    (thop adds ``total_ops``/``total_params`` buffers, so it runs on a copy)."""
    from thop import profile

    probe = copy.deepcopy(model).eval()
    x = torch.rand(1, 3, input_size, input_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # thop's "API is being deprecated"
        macs, thop_params = profile(
            probe, inputs=(x,), custom_ops=_thop_custom_ops(), verbose=False
        )
    return {
        "params_m": thop_params / 1e6,
        "params_all_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops": macs / 1e9,
    }


def _parse_options(pairs: Sequence[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option expects key=value, got {pair!r}")
        lowered = text.lower()
        if lowered in ("true", "false"):
            options[key] = lowered == "true"
        else:
            try:
                options[key] = int(text)
            except ValueError:
                options[key] = text
    return options


def main(argv: Sequence[str] | None = None) -> list[dict]:
    cfg = parse_config(Config, argv, description=__doc__)
    names = cfg.models or sorted(nets.MODELS)
    options = _parse_options(cfg.option)
    rows = []
    for name in names:
        model = nets.build_model(name, num_classes=cfg.num_classes, **options)
        size = cfg.input_size or model.default_input_size
        row = {"model": name, "input_size": size, **count(model, size)}
        if options:
            row["options"] = options
        rows.append(row)
    if cfg.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'model':<18} {'input':>5} {'params (M)':>10} {'all params (M)':>14} {'GFLOPs':>8}")
        for r in rows:
            print(
                f"{r['model']:<18} {r['input_size']:>5} {r['params_m']:>10.2f} "
                f"{r['params_all_m']:>14.2f} {r['gflops']:>8.2f}"
            )
    return rows


if __name__ == "__main__":
    main()
