"""Parameters and GFLOPs of the registry models, in the paper's convention.

    python model_flop_params.py                                  # every model, default size
    python model_flop_params.py --models fastsegformer_p fastsegformer_e
    python model_flop_params.py --models fastsegformer_p --option pyramid=ppm irb=false
    python model_flop_params.py --models swin_t_att_unet --input-size 224 --json

"GFLOPs" is what thop counts (multiply-accumulates, per image, batch 1), the figure the
FastSegFormer paper (Cai et al., 2024) reports as GFLOPs. ``params_m`` is thop's parameter
count, which (like the paper) leaves out parameters of layers thop does not hook: norm layers
other than BatchNorm/LayerNorm/InstanceNorm (PoolFormer's GroupNorms) and bare parameters
(layer scales, attention biases). ``params_all_m`` counts every parameter. The counting is
``nets.profile.complexity``; docs/models.md has the numbers and why they differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import nets
from nets.profile import complexity
from utils.cli import parse_config


@dataclass
class Config:
    models: tuple[str, ...] = ()  # registry names to count (empty: every model in nets.MODELS)
    input_size: int | None = None  # square input size (None: each model's default_input_size)
    num_classes: int = 4  # classes of the output layer (the paper: 4)
    option: tuple[str, ...] = ()  # model options key=value for every model, e.g. pyramid=ppm
    json: bool = False  # print JSON [{"model", "input_size", "params_m", "gflops", ...}]


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
        row = {"model": name, "input_size": size, **complexity(model, size)}
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
