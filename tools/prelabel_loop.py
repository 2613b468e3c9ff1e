"""The pre-annotation loop on the synthetic oranges, measured: does correcting the photos the
model is least sure of first pay off, against as many photos chosen at random?

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) was
trained on 1448 photos drawn by hand. This tool runs the loop of docs/data.md
("Pre-annotation") once per seed:

1. the synthetic train split is shuffled with the seed: the first --labelled photos are
   labelled, the next --pool photos are the unlabelled pool;
2. a model is trained on the labelled photos (train.py, as its own process);
3. it drafts the pool in labelme files and ranks them by --rank-by (utils.inference.prelabel,
   what ``predict.py --mode prelabel --rank`` runs);
4. "correcting" a photo takes its ground truth: the --correct most uncertain photos, and as many
   chosen at random (seeded), are added to the labelled ones, and a model is trained from
   scratch on each set with the same seed and the same number of steps;
5. the three models are scored on the test split (utils.inference.evaluate), and each pool
   photo's draft, read back as voc_annotation.py reads it (utils.data.labelme), is compared
   with its ground truth: the pixels a person changes on the draft, against the defect pixels
   they would paint on an empty photo.

Every training runs --steps optimiser steps, whatever the number of photos. A finished seed
(``OUT/seed<k>/result.json``) is not redone, a finished training (its best.pth) is reused and
an interrupted one continues (``train.py --resume auto``), so the same command after an
interruption finishes the loop. The summary (mean and sample
standard deviation over seeds) goes to ``OUT/summary.md`` and ``OUT/summary.json``.

    python -m tools.prelabel_loop                                   # 3 seeds, the defaults
    python -m tools.prelabel_loop --seeds 1 2 3 4 5 --out logs/prelabel_loop5
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/prelabel_loop.py`
    sys.path.insert(0, str(ROOT))

from utils.cli import parse_config  # noqa: E402
from utils.data.convert import ClassTable  # noqa: E402
from utils.data.labelme import paint_shapes, read_labelme  # noqa: E402
from utils.data.labels import read_mask  # noqa: E402
from utils.data.preprocess import CLASS_NAMES  # noqa: E402
from utils.data.synthetic import generate_dataset  # noqa: E402
from utils.data.voc import read_split, resolve_voc_root, split_paths  # noqa: E402
from utils.fileio import write_text  # noqa: E402
from utils.inference.evaluate import evaluate  # noqa: E402
from utils.inference.open_model import open_model  # noqa: E402
from utils.inference.prelabel import UNCERTAINTY, prelabel  # noqa: E402

RESULT = "result.json"  # a finished seed's record


@dataclass
class Config:
    out: str = "logs/prelabel_loop"  # results: OUT/seed<k>/, OUT/summary.md, OUT/summary.json
    data: str = "data/synthetic_oranges_256"  # synthetic oranges (made here if missing)
    num: int = 200  # oranges to make when --data is missing (split 6:2:2)
    size: int = 256  # their side in pixels
    data_seed: int = 0  # the generator's seed
    seeds: tuple[int, ...] = (1, 2, 3)  # one loop per seed: split, training, random choice
    labelled: int = 16  # photos labelled at the start
    pool: int = 64  # unlabelled photos the first model drafts
    correct: int = 16  # photos corrected (the most uncertain, or chosen at random)
    rank_by: Literal[tuple(UNCERTAINTY)] = "entropy"  # uncertainty measure of the ranking
    min_area: int = 20  # drafts leave out regions and holes under this many pixels
    model: str = "fastsegformer_p"  # registry model name (nets.MODELS)
    input_size: int = 128  # network input side
    steps: int = 120  # optimiser steps of every training
    batch_size: int = 8  # training batch
    lr: float = 3e-3  # Adam, cosine to lr / 100
    class_weights: tuple[float, ...] = (1.0, 3.0, 6.0, 6.0)  # CE weight per class (+ dice)
    threads: int = 1  # CPU threads of every training and of the drafting (on a shared CPU,
    # more threads than free cores make each step several times slower)
    python: str = sys.executable  # interpreter for train.py


# ---------------------------------------------------------------------------- the pieces
def split_pool(ids: Sequence[str], labelled: int, pool: int, seed: int) -> tuple[list, list]:
    """(labelled ids, pool ids): the first `labelled` and the next `pool` of `ids` shuffled
    with `seed`."""
    if labelled + pool > len(ids):
        raise ValueError(
            f"--labelled {labelled} + --pool {pool} photos, but the train split has {len(ids)}"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    chosen = [ids[i] for i in order]
    return chosen[:labelled], chosen[labelled : labelled + pool]


def edit_cost(draft_json: Path, truth: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    """Pixels a person changes to turn the labelme draft into `truth`, and the defect pixels
    they would paint on an empty photo instead; ignored pixels (255) count for neither."""
    item = read_labelme(draft_json)
    hw = (item.photo.height, item.photo.width)
    draft = paint_shapes(hw, item.shapes, ClassTable(tuple(class_names)), draft_json)
    counted = truth != 255
    return {
        "changed": int(((draft != truth) & counted).sum()),
        "from_scratch": int(((truth != 0) & counted).sum()),
    }


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's of the ranks; ties in order of appearance)."""
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable")
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable")
    return float(np.corrcoef(ra, rb)[0, 1])


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def write_data_root(folder: Path, voc: Path, train: Sequence[str], val: Sequence[str]) -> Path:
    """A VOC root whose photos and masks are `voc`'s (symbolic links) with its own splits."""
    target = folder / "VOC2007"
    (target / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    for name in ("JPEGImages", "SegmentationClass"):
        link = target / name
        if not link.exists():
            link.symlink_to((voc / name).resolve(), target_is_directory=True)
    for split, ids in (("train", train), ("val", val)):
        write_text(target / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
    return folder


def train(cfg: Config, data: Path, run_dir: Path, n_photos: int, seed: int) -> Path:
    """train.py on `data` for cfg.steps steps; returns its best.pth (reused when present; an
    interrupted training continues, train.py --resume auto)."""
    best = run_dir / "best.pth"
    if best.is_file():
        return best
    epochs = math.ceil(cfg.steps / max(1, n_photos // cfg.batch_size))
    args = {
        "data": data, "model": cfg.model, "input-size": cfg.input_size, "epochs": epochs,
        "freeze-epochs": 0, "batch-size": cfg.batch_size, "freeze-batch-size": cfg.batch_size,
        "lr": cfg.lr, "min-lr": cfg.lr / 100, "eval-period": epochs, "save-period": epochs,
        "workers": 1, "overlays": 0, "seed": seed, "save-dir": run_dir.parent,
        "name": run_dir.name, "resume": "auto",
    }  # fmt: skip
    command = [cfg.python, "train.py", "--no-scale-lr", "--dice", "--no-tensorboard"]
    command += [t for k, v in args.items() for t in (f"--{k}", str(v))]
    command += ["--class-weights", *(str(w) for w in cfg.class_weights)]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(command)}\n")
        f.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(cfg.threads)}
        code = subprocess.call(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if code != 0 or not best.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"training in {run_dir} failed (status {code}); {log} ends:\n{tail}")
    return best


def score_test_split(checkpoint: Path, voc_root: Path, out: Path) -> dict[str, Any]:
    """mIoU and per-class IoU of `checkpoint` on the test split (full-size photos)."""
    predictor = open_model(checkpoint, backend="torch")
    names = predictor.class_names
    doc = evaluate(voc_root, "test", out, len(names), names, predictor, progress=False)
    return {"mIoU": doc["mIoU"], "IoU": dict(zip(names, doc["IoU"], strict=True))}


# ---------------------------------------------------------------------------- one seed
def run_seed(cfg: Config, voc_root: Path, seed: int) -> dict[str, Any]:
    """The loop of the module docstring for one seed; its record (also OUT/seed<k>/result.json)."""
    folder = Path(cfg.out) / f"seed{seed}"
    if (folder / RESULT).is_file():
        return json.loads((folder / RESULT).read_text())
    started = time.perf_counter()
    voc = resolve_voc_root(voc_root)
    _, train_ids, train_photos, train_masks = split_paths(voc, "train")
    _, val_ids = read_split(voc, "val")
    val = val_ids[:8]  # only picks best.pth, evaluated once at the end: kept small
    labelled, pool = split_pool(train_ids, cfg.labelled, cfg.pool, seed)
    print(f"seed {seed}: {len(labelled)} labelled, {len(pool)} in the pool", flush=True)

    first = train(cfg, write_data_root(folder / "data_first", voc, labelled, val),
                  folder / "first", len(labelled), seed)  # fmt: skip
    predictor = open_model(first, backend="torch")
    names = predictor.class_names
    photo_of = dict(zip(train_ids, train_photos, strict=True))
    mask_of = dict(zip(train_ids, train_masks, strict=True))
    photos = [photo_of[i] for i in pool]
    drafted = prelabel(predictor, photos, folder / "drafts", min_area=cfg.min_area, rank=True,
                       rank_by=cfg.rank_by, log=lambda _: None)  # fmt: skip
    ranked = [p.photo.stem for p in drafted.ranked(cfg.rank_by)]
    shuffled = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    picks = {"ranked": ranked[: cfg.correct], "random": shuffled[: cfg.correct]}
    costs = {}
    for photo in drafted.photos:
        truth = read_mask(mask_of[photo.photo.stem], len(names))  # class ids and 255
        costs[photo.photo.stem] = {
            **edit_cost(photo.draft, truth, names),
            "uncertainty": photo.scores[cfg.rank_by],
        }
    scores = {"first": score_test_split(first, voc_root, folder / "first" / "test")}
    for name, chosen in picks.items():
        data = write_data_root(folder / f"data_{name}", voc, labelled + chosen, val)
        best = train(cfg, data, folder / name, len(labelled) + len(chosen), seed)
        scores[name] = score_test_split(best, voc_root, folder / name / "test")

    def cost_of(ids: Sequence[str]) -> dict[str, int]:
        return {k: sum(costs[i][k] for i in ids) for k in ("changed", "from_scratch")}

    record = {
        "seed": seed,
        "labelled": labelled,
        "picks": picks,
        "test": scores,
        "edit": {
            "ranked": cost_of(picks["ranked"]),
            "random": cost_of(picks["random"]),
            "pool": cost_of(pool),
        },  # fmt: skip
        "uncertainty_vs_changed": rank_correlation(
            [costs[i]["uncertainty"] for i in pool], [costs[i]["changed"] for i in pool]
        ),
        "per_photo": costs,
        "minutes": (time.perf_counter() - started) / 60,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    write_text(folder / RESULT, json.dumps(record, indent=2))
    return record


# ---------------------------------------------------------------------------- summary
def summarise(records: Sequence[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of what docs/data.md reports."""

    def stat(values: Sequence[float]) -> dict[str, float]:
        mean, sd = mean_sd(values)
        return {"mean": mean, "sd": sd}

    out: dict[str, Any] = {"seeds": [r["seed"] for r in records], "config": asdict(cfg)}
    for name in ("first", "ranked", "random"):
        out[f"test_mIoU_{name}"] = stat([100 * r["test"][name]["mIoU"] for r in records])
    out["ranked_minus_random"] = stat(
        [100 * (r["test"]["ranked"]["mIoU"] - r["test"]["random"]["mIoU"]) for r in records]
    )
    for name in ("ranked", "random", "pool"):
        out[f"changed_share_{name}"] = stat(
            [r["edit"][name]["changed"] / max(1, r["edit"][name]["from_scratch"]) for r in records]
        )
        out[f"changed_{name}"] = stat([r["edit"][name]["changed"] for r in records])
        out[f"from_scratch_{name}"] = stat([r["edit"][name]["from_scratch"] for r in records])
    out["uncertainty_vs_changed"] = stat([r["uncertainty_vs_changed"] for r in records])
    out["minutes"] = stat([r["minutes"] for r in records])
    return out


def format_summary(s: dict[str, Any]) -> str:
    """summary.md: the table docs/data.md shows."""

    def pm(key: str, digits: int = 2, scale: float = 1.0) -> str:
        return f"{scale * s[key]['mean']:.{digits}f} ± {scale * s[key]['sd']:.{digits}f}"

    cfg = s["config"]
    n = len(s["seeds"])
    lines = [
        f"{n} seeds ({', '.join(map(str, s['seeds']))}); {cfg['labelled']} labelled photos, "
        f"{cfg['pool']} drafted, {cfg['correct']} corrected; {cfg['model']} at "
        f"{cfg['input_size']}, {cfg['steps']} steps per training; ranking by {cfg['rank_by']}",
        "",
        "| | test mIoU % |",
        "|---|---|",
        f"| first model ({cfg['labelled']} photos) | {pm('test_mIoU_first')} |",
        f"| + {cfg['correct']} most uncertain, corrected | {pm('test_mIoU_ranked')} |",
        f"| + {cfg['correct']} at random, corrected | {pm('test_mIoU_random')} |",
        f"| most uncertain - random | {pm('ranked_minus_random')} |",
        "",
        "| photos | pixels changed on the drafts | defect pixels drawn from scratch | ratio |",
        "|---|---|---|---|",
    ]
    for name, label in (
        ("ranked", f"{cfg['correct']} most uncertain"),
        ("random", f"{cfg['correct']} at random"),
        ("pool", f"all {cfg['pool']} drafted"),
    ):
        lines.append(
            f"| {label} | {pm(f'changed_{name}', 0)} | {pm(f'from_scratch_{name}', 0)} | "
            f"{pm(f'changed_share_{name}')} |"
        )
    lines += [
        "",
        f"Spearman correlation, photo uncertainty vs pixels changed on its draft: "
        f"{pm('uncertainty_vs_changed')}",
        f"Minutes per seed: {pm('minutes', 1)} (mean ± sample standard deviation over seeds)",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    if cfg.correct > cfg.pool or min(cfg.labelled, cfg.correct, cfg.steps) < 1:
        print(
            "error: need 1 <= --correct <= --pool, --labelled >= 1, --steps >= 1", file=sys.stderr
        )
        return 2
    if len(CLASS_NAMES) != len(cfg.class_weights):
        print(f"error: --class-weights needs {len(CLASS_NAMES)} values", file=sys.stderr)
        return 2
    torch.set_num_threads(cfg.threads)
    voc_root = Path(cfg.data)
    if not (voc_root / "VOC2007").is_dir():
        print(f"making {cfg.num} synthetic oranges ({cfg.size} px) in {voc_root} ...", flush=True)
        generate_dataset(voc_root, cfg.num, cfg.data_seed, cfg.size)
    records = []
    for seed in cfg.seeds:
        records.append(run_seed(cfg, voc_root, seed))
        summary = summarise(records, cfg)
        write_text(Path(cfg.out) / "summary.json", json.dumps(summary, indent=2))
        text = format_summary(summary)
        write_text(Path(cfg.out) / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
