"""Training curves of several runs on one chart: the training loss and the val mIoU per epoch.

Each run folder written by train.py / train_distillation.py holds ``history.json`` (see
utils/training/logger.py); this tool reads the total training loss (``loss``) and the val
mIoU of each and draws them side by side, one line per run, e.g. to see whether bf16 autocast
trains like float32 on the same seed (docs/training.md, "`make demo` (demo.py)"):

    python tools/compare_runs.py --runs logs/demo_fp32/run_A logs/demo_default/run_B \\
        --labels "float32" "bf16 autocast" --out logs/compare.png

A folder without history.json is an error naming it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/compare_runs.py`
    sys.path.insert(0, str(ROOT))

from matplotlib.figure import Figure  # noqa: E402

from utils.cli import parse_config  # noqa: E402
from utils.fileio import atomic_path  # noqa: E402


@dataclass
class Config:
    runs: tuple[str, ...] = ()  # run folders (each with history.json)
    labels: tuple[str, ...] = ()  # one legend label per run (default: the folder names)
    out: str = "logs/compare_runs.png"  # the chart (PNG)
    title: str = ""  # chart title


def read_history(run: str | Path) -> dict[str, list[dict]]:
    """The ``{"train": [...], "eval": [...]}`` history of a run folder; ValueError naming it."""
    path = Path(run) / "history.json"
    if not path.is_file():
        raise ValueError(f"{run}: no history.json (not a run folder of train.py?)")
    try:
        history = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a JSON history ({err})") from None
    if not isinstance(history, dict) or not isinstance(history.get("train"), list):
        raise ValueError(f"{path}: expected {{'train': [...], 'eval': [...]}}")
    return history


def draw(histories: list[dict], labels: list[str], title: str = "") -> Figure:
    """Left: training loss per epoch; right: val mIoU (%) per evaluation; one line per run."""
    fig = Figure(figsize=(10, 4))
    loss_ax, miou_ax = fig.subplots(1, 2)
    for history, label in zip(histories, labels, strict=True):
        train = [e for e in history["train"] if "loss" in e]
        loss_ax.plot([e["epoch"] for e in train], [e["loss"] for e in train], label=label)
        evals = history.get("eval", [])
        miou_ax.plot([e["epoch"] for e in evals], [100 * e["mIoU"] for e in evals], "o-",
                     label=label)  # fmt: skip
    loss_ax.set(xlabel="epoch", ylabel="training loss")
    miou_ax.set(xlabel="epoch", ylabel="val mIoU (%)")
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    if not cfg.runs:
        print("compare_runs: give at least one run folder (--runs DIR ...)", file=sys.stderr)
        return 2
    if cfg.labels and len(cfg.labels) != len(cfg.runs):
        print(f"compare_runs: {len(cfg.labels)} labels for {len(cfg.runs)} runs", file=sys.stderr)
        return 2
    try:
        histories = [read_history(run) for run in cfg.runs]
    except ValueError as err:
        print(f"compare_runs: {err}", file=sys.stderr)
        return 2
    labels = list(cfg.labels) or [Path(run).name for run in cfg.runs]
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        draw(histories, labels, cfg.title).savefig(tmp, dpi=100)
    print(f"compare_runs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
