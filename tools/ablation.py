"""Ablation runner: a grid of configurations x seeds, each an ordinary training run, summarised.

One small YAML file describes the grid (an example: tools/ablations/kd_synthetic.yaml, the
knowledge-distillation table of docs/distillation.md). Every run is a plain ``train.py`` or
``train_distillation.py`` process in its own folder, evaluated with ``get_miou.py`` on each
split the file names (e.g. the synthetic test split and the real photos of
../shared/samples/orange_real). Runs are resumable: a run whose folder holds ``ablation.json``
is finished and never redone; every run is started with ``--name`` and ``--resume auto``, so a
run without ``ablation.json`` continues from its newest checkpoint (or starts afresh when it has
none); rerunning the command after an interruption finishes the grid. The summary is
rewritten after every run: mean and standard deviation of test mIoU per configuration, mean
per-class IoU, the other evaluations' mIoU, training wall time, as ``summary.md`` (Markdown),
``summary.csv``, ``runs.csv`` (one row per run) and ``summary.png``.

    python -m tools.ablation --grid tools/ablations/kd_synthetic.yaml               # run, summarise
    python -m tools.ablation --grid tools/ablations/kd_synthetic.yaml --dry-run     # commands only
    python -m tools.ablation --grid tools/ablations/kd_synthetic.yaml --summary-only
    python -m tools.ablation --grid tools/ablations/kd_synthetic.yaml --only no_kd dist

The file (paths relative to the repository root; ``{name}`` in a value is the folder of the
prepared run ``name``, ``{out}`` the output folder)::

    out: logs/ablations/kd_synthetic   # runs go to OUT/runs/<config>/seed<k>/, summary to OUT/
    seeds: [1, 2, 3]                   # each configuration runs once per seed (--seed k)
    lock: /tmp/cpu.lock                # optional: flock held while one run trains and evaluates
    synthetic: {out: data/synthetic_oranges, num: 200, seed: 0}   # optional: made if missing
    common: {data: data/synthetic_oranges, epochs: 10}            # flags of every run
    evaluate:                          # get_miou.py on each; the first is the headline (test)
      - {name: test, data: data/synthetic_oranges, split: test}
      - {name: real, data: ../shared/samples/orange_real, split: all, optional: true}
    prepare:                           # runs made once, before the grid (e.g. the teacher)
      teacher: {script: train.py, args: {model: fastsegformer_p, input-size: 256}}
    baseline: no_kd                    # optional: the table gives differences to it
    configs:                           # name -> script, flags and an optional label
      no_kd: {script: train.py, label: no KD, args: {model: fastsegformer_p}}
      dist:
        script: train_distillation.py
        args: {kd: dist, teacher-checkpoint: "{teacher}/best.pth", teacher-input-size: 256}

Flags are written without the leading dashes; a list gives several values, true / false a
boolean flag (``--amp`` / ``--no-amp``). Later keys override: common, then the configuration;
the runner adds --save-dir, --name, --resume auto and --seed. The command of every run is
recorded in its folder; a finished or started run whose command no longer matches the file is
an error (delete its folder to redo it), so a summary always describes the file that made it.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/ablation.py`
    sys.path.insert(0, str(ROOT))

from utils.cli import parse_config  # noqa: E402
from utils.fileio import write_bytes, write_text  # noqa: E402

SCRIPTS = ("train.py", "train_distillation.py")
RESERVED = ("save-dir", "name", "resume")  # flags the runner sets itself (and grid seeds)
# grid runs take --seed from 'seeds'; a prepared run (made once) may set its own
GRID_FLAGS = {"configs": ("seed",), "prepare": ()}
RESULT = "ablation.json"  # a finished run's record
STATE = "ablation_state.json"  # a started run's command and time spent so far
KEYS = ("out", "seeds", "lock", "synthetic", "common", "evaluate", "prepare", "baseline", "configs")


class GridError(ValueError):
    """The grid file is invalid or disagrees with the runs already made; the message says how."""


@dataclass
class Config:
    grid: str  # YAML file describing the ablation (e.g. tools/ablations/kd_synthetic.yaml)
    dry_run: bool = False  # print each run's commands and state, run nothing
    summary_only: bool = False  # train nothing: summarise the finished runs
    only: tuple[str, ...] = ()  # run only these configurations (prepared runs always)
    lock: str | None = None  # lock file to hold per run (None: the grid's; '' for none)
    python: str = sys.executable  # interpreter for the scripts


@dataclass
class Evaluation:
    name: str
    data: str
    split: str
    optional: bool = False


@dataclass
class Run:
    """One training run: a prepared run (seed None in its name) or a grid cell."""

    config: str  # configuration (or prepared run) name
    seed: int | None  # None for a prepared run (its seed comes from its flags)
    script: str
    args: list[str]  # flags, without --save-dir/--name/--resume
    folder: Path  # relative to ROOT

    @property
    def label(self) -> str:
        return self.config if self.seed is None else f"{self.config}/seed{self.seed}"

    def command(self, python: str) -> list[str]:
        seed = [] if self.seed is None else ["--seed", str(self.seed)]
        where = ["--save-dir", str(self.folder.parent), "--name", self.folder.name]
        where += ["--resume", "auto"]  # the same command starts the run and continues it
        return [python, self.script, *self.args, *seed, *where]


@dataclass
class Grid:
    path: Path
    out: Path
    seeds: list[int]
    lock: str
    synthetic: dict[str, Any] | None
    evaluate: list[Evaluation]
    prepare: dict[str, dict[str, Any]]
    configs: dict[str, dict[str, Any]]
    common: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None

    def label(self, name: str) -> str:
        spec = self.configs.get(name) or self.prepare.get(name) or {}
        return str(spec.get("label", name))


# ----------------------------------------------------------------------------- the grid file


def flag_tokens(args: dict[str, Any], where: str, reserved: Sequence[str] = RESERVED) -> list[str]:
    """{"input-size": 256, "amp": False, "kd-pairs": ["5:5", "6:6"]} -> command-line tokens."""
    tokens: list[str] = []
    for key, value in args.items():
        name = str(key).strip().lstrip("-").replace("_", "-")
        if name in reserved:
            raise GridError(f"{where}: --{name} is set by the runner; remove it")
        if isinstance(value, bool):
            tokens.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, (list, tuple)):
            tokens += [f"--{name}", *(str(v) for v in value)]
        elif value is None:
            raise GridError(f"{where}: flag {key!r} has no value")
        else:
            tokens += [f"--{name}", str(value)]
    return tokens


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{where}: expected a mapping (key: value), got {type(value).__name__}")
    return value


def load_grid(path: str | Path) -> Grid:
    """The grid of a YAML file, checked; GridError naming the file and the key on a problem."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"--grid {path}: file not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise GridError(f"{path}: not valid YAML: {exc}") from None
    doc = _mapping(doc, str(path))
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise GridError(f"{path}: unknown key(s) {unknown}; valid keys: {', '.join(KEYS)}")
    for key in ("out", "configs"):
        if not doc.get(key):
            raise GridError(f"{path}: '{key}' is required")
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise GridError(f"{path}: 'seeds' must be a list of integers, e.g. [1, 2, 3]")
    if len(set(seeds)) != len(seeds):
        raise GridError(f"{path}: 'seeds' repeats a seed: {seeds}")
    evaluations = []
    for i, item in enumerate(doc.get("evaluate") or []):
        item = _mapping(item, f"{path}: evaluate[{i}]")
        missing = [k for k in ("name", "data") if not item.get(k)]
        if missing:
            raise GridError(f"{path}: evaluate[{i}] needs {', '.join(missing)}")
        evaluations.append(
            Evaluation(
                str(item["name"]),
                str(item["data"]),
                str(item.get("split", "test")),
                bool(item.get("optional", False)),
            )
        )
    if not evaluations:
        raise GridError(f"{path}: 'evaluate' needs at least one entry, e.g. the test split")
    if len({e.name for e in evaluations}) != len(evaluations):
        raise GridError(f"{path}: two 'evaluate' entries share a name")
    prepare = _mapping(doc.get("prepare"), f"{path}: prepare")
    configs = _mapping(doc.get("configs"), f"{path}: configs")
    clash = sorted(set(prepare) & set(configs))
    if clash:
        raise GridError(f"{path}: {clash} named both in 'prepare' and in 'configs'")
    for group, specs in (("prepare", prepare), ("configs", configs)):
        for name, spec in specs.items():
            spec = _mapping(spec, f"{path}: {group}.{name}")
            specs[name] = spec
            if spec.get("script") not in SCRIPTS:
                raise GridError(
                    f"{path}: {group}.{name}.script is {spec.get('script')!r}; expected one of "
                    f"{', '.join(SCRIPTS)}"
                )
            bad = sorted(set(spec) - {"script", "args", "label"})
            if bad:
                raise GridError(f"{path}: {group}.{name}: unknown key(s) {bad}")
            args = _mapping(spec.get("args"), f"{path}: {group}.{name}.args")
            flag_tokens(args, f"{path}: {group}.{name}", RESERVED + GRID_FLAGS[group])
    common = _mapping(doc.get("common"), f"{path}: common")
    flag_tokens(common, f"{path}: common", (*RESERVED, "seed"))
    baseline = doc.get("baseline")
    if baseline is not None and baseline not in configs:
        raise GridError(f"{path}: baseline {baseline!r} is not one of the configs")
    synthetic = doc.get("synthetic")
    if synthetic is not None:
        synthetic = _mapping(synthetic, f"{path}: synthetic")
        if not synthetic.get("out"):
            raise GridError(f"{path}: synthetic.out (the data folder to make) is required")
    return Grid(
        path=path,
        out=Path(str(doc["out"])),
        seeds=seeds,
        lock=str(doc.get("lock") or ""),
        synthetic=synthetic,
        evaluate=evaluations,
        prepare=prepare,
        configs=configs,
        common=common,
        baseline=baseline,
    )


def _substitute(value: Any, names: dict[str, str], where: str) -> Any:
    if isinstance(value, list):
        return [_substitute(v, names, where) for v in value]
    if not isinstance(value, str):
        return value
    try:
        return value.format_map(names)
    except (KeyError, IndexError, ValueError) as exc:
        raise GridError(
            f"{where}: {value!r} refers to {exc} which is not a prepared run; known: "
            f"{', '.join(sorted(names))}"
        ) from None


def plan(grid: Grid) -> tuple[list[Run], list[Run]]:
    """(prepared runs, grid runs) in the file's order: configurations outer, seeds inner."""
    names = {"out": str(grid.out)}
    names.update({name: str(grid.out / "prepare" / name) for name in grid.prepare})

    def build(group: str, name: str, spec: dict, seed: int | None, folder: Path) -> Run:
        where = f"{grid.path}: {group}.{name}"
        args = {**grid.common, **(spec.get("args") or {})}
        args = {k: _substitute(v, names, where) for k, v in args.items()}
        reserved = RESERVED + GRID_FLAGS["prepare" if seed is None else "configs"]
        return Run(name, seed, spec["script"], flag_tokens(args, where, reserved), folder)

    prepared = [
        build("prepare", name, spec, None, grid.out / "prepare" / name)
        for name, spec in grid.prepare.items()
    ]
    runs = [
        build("configs", name, spec, seed, grid.out / "runs" / name / f"seed{seed}")
        for name, spec in grid.configs.items()
        for seed in grid.seeds
    ]
    return prepared, runs


# ----------------------------------------------------------------------------- running


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


@contextmanager
def held(lock: str) -> Iterator[None]:
    """Hold an exclusive flock on `lock` (the same lock as `flock FILE cmd`); '' holds none."""
    if not lock:
        yield
        return
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"  waiting for {lock} ...", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_logged(command: Sequence[str], log: Path) -> tuple[int, float]:
    """Run `command` in the repository root, appending its output to `log`; (status, seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(command)}\n")
        f.flush()
        code = subprocess.call(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    return code, time.perf_counter() - start


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join(text[-lines:])


def run_state(run: Run, python: str) -> str:
    """'done', 'partial' (started: resume it), 'new'; GridError if the file changed under it."""
    folder = ROOT / run.folder
    recorded = read_json(folder / RESULT) or read_json(folder / STATE)
    expected = run.command(python)[1:]  # the interpreter may differ between machines
    if recorded is not None and recorded.get("command") != expected:
        raise GridError(
            f"{run.folder} was made by another command than the grid file now gives:\n"
            f"  recorded: {shlex.join(recorded.get('command') or [])}\n"
            f"  now:      {shlex.join(expected)}\n"
            f"delete {run.folder} to redo the run, or restore the file"
        )
    if (folder / RESULT).is_file():
        return "done"
    return "partial" if (folder / "last.pth").is_file() else "new"


def ensure_data(grid: Grid, python: str, lock: str, dry_run: bool) -> None:
    """Make the synthetic data set named by the file's 'synthetic' section if it is missing."""
    if not grid.synthetic:
        return
    out = Path(str(grid.synthetic["out"]))
    if (ROOT / out / "VOC2007").is_dir():
        return
    command = [python, "-m", "utils.data.synthetic"]
    command += flag_tokens(grid.synthetic, f"{grid.path}: synthetic")
    print(f"data: {shlex.join(command[1:])}", flush=True)
    if dry_run:
        return
    with held(lock):
        code, _ = run_logged(command, ROOT / grid.out / "synthetic.log")
    if code:
        raise RuntimeError(f"making the data set failed; see {grid.out / 'synthetic.log'}")


def evaluate_run(run: Run, grid: Grid, python: str) -> tuple[dict[str, dict], float]:
    """get_miou.py on every evaluation of the file; ({name: metrics.json}, seconds)."""
    folder = ROOT / run.folder
    checkpoint = folder / "best.pth" if (folder / "best.pth").is_file() else folder / "last.pth"
    results, seconds = {}, 0.0
    for ev in grid.evaluate:
        if not (ROOT / ev.data).exists():
            if ev.optional:
                continue
            raise GridError(f"{grid.path}: evaluate {ev.name}: {ev.data} not found")
        out = run.folder / f"eval_{ev.name}"
        command = [python, "get_miou.py", "--checkpoint", str(checkpoint)]
        command += ["--data", ev.data, "--split", ev.split, "--out", str(out), "--no-progress"]
        code, spent = run_logged(command, folder / "eval.log")
        seconds += spent
        if code:
            raise RuntimeError(f"{run.label}: get_miou.py failed:\n{_tail(folder / 'eval.log')}")
        doc = json.loads((ROOT / out / "metrics.json").read_text())
        results[ev.name] = {k: doc[k] for k in ("mIoU", "mPA", "IoU", "class_names") if k in doc}
    return results, seconds


def execute(run: Run, grid: Grid, python: str, lock: str) -> dict:
    """Train (or finish) and evaluate one run under the lock; its record, also in RESULT."""
    folder = ROOT / run.folder
    state = read_json(folder / STATE) or {"train_seconds": 0.0, "attempts": 0}
    command = run.command(python)
    with held(lock):
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        load_before = load_average()
        folder.mkdir(parents=True, exist_ok=True)
        state.update(command=run.command(python)[1:], attempts=state["attempts"] + 1)
        write_text(folder / STATE, json.dumps(state, indent=2))
        code, seconds = run_logged(command, folder / "train.log")
        state["train_seconds"] += seconds
        write_text(folder / STATE, json.dumps(state, indent=2))
        if code:
            raise RuntimeError(
                f"{run.label}: {run.script} exited with status {code}:\n"
                f"{_tail(folder / 'train.log')}"
            )
        metrics, eval_seconds = evaluate_run(run, grid, python)
        load_after = load_average()
    ckpt_info = read_json(folder / "history.json") or {}
    val = [e.get("mIoU") for e in ckpt_info.get("eval", []) if e.get("mIoU") is not None]
    record = {
        "config": run.config,
        "seed": run.seed,
        "script": run.script,
        "command": state["command"],
        "train_seconds": round(state["train_seconds"], 1),
        "train_attempts": state["attempts"],
        "eval_seconds": round(eval_seconds, 1),
        "best_val_mIoU": max(val) if val else None,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "started_last_attempt": started,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "metrics": metrics,
    }
    write_text(folder / RESULT, json.dumps(record, indent=2))
    return record


# ----------------------------------------------------------------------------- summary


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def summarise(grid: Grid, prepared: list[Run], runs: list[Run]) -> dict[str, Path]:
    """Write summary.md / summary.csv / runs.csv / summary.png from the finished runs."""
    out = ROOT / grid.out
    head = grid.evaluate[0].name
    others = [e.name for e in grid.evaluate[1:]]
    records = {r.label: read_json(ROOT / r.folder / RESULT) for r in prepared + runs}
    class_names: list[str] = []
    for rec in records.values():
        if rec and head in rec["metrics"]:
            class_names = rec["metrics"][head].get("class_names") or class_names
            break

    def value(rec: dict, ev: str, key: str = "mIoU", i: int | None = None) -> float | None:
        m = rec["metrics"].get(ev)
        if m is None:
            return None
        v = m[key] if i is None else m[key][i]
        return None if v is None else float(v)

    # one row per configuration
    rows = []
    for name in grid.configs:
        done = [records[r.label] for r in runs if r.config == name and records[r.label]]
        row: dict[str, Any] = {"config": name, "label": grid.label(name), "runs": len(done)}
        row["script"] = grid.configs[name]["script"]
        for ev in [head, *others]:
            vals = [v for rec in done if (v := value(rec, ev)) is not None]
            row[f"{ev}_mIoU_mean"], row[f"{ev}_mIoU_std"] = _mean_std(vals)
            row[f"{ev}_mIoU_values"] = vals
        for i, cls in enumerate(class_names):
            vals = [v for rec in done if (v := value(rec, head, "IoU", i)) is not None]
            row[f"{head}_IoU_{cls}"] = _mean_std(vals)[0]
        secs = [rec["train_seconds"] for rec in done]
        row["train_minutes_mean"] = statistics.fmean(secs) / 60 if secs else math.nan
        row["train_minutes_total"] = sum(secs) / 60
        row["eval_minutes_total"] = sum(rec["eval_seconds"] for rec in done) / 60
        rows.append(row)
    base = next((r for r in rows if r["config"] == grid.baseline), None)

    # Markdown
    md = io.StringIO()
    total = sum(rec["train_seconds"] + rec["eval_seconds"] for rec in records.values() if rec)
    md.write(f"Grid: `{grid.path}` ({len(grid.seeds)} seeds: {grid.seeds}); mIoU and IoU in %, ")
    md.write(f"mean ± sample standard deviation over the seeds; {head} = headline split.\n\n")
    cols = ["configuration", "runs", f"{head} mIoU"]
    if base is not None:
        cols.append(f"Δ vs {base['label']}")
    cols += [f"{head} IoU {c}" for c in class_names]
    cols += [f"{ev} mIoU" for ev in others] + ["train min / run"]
    md.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
    for row in rows:
        cells = [row["label"], f"{row['runs']}/{len(grid.seeds)}"]
        cells.append(f"{_pct(row[f'{head}_mIoU_mean'])} ± {_pct(row[f'{head}_mIoU_std'])}")
        if base is not None:
            delta = row[f"{head}_mIoU_mean"] - base[f"{head}_mIoU_mean"]
            cells.append("-" if not math.isfinite(delta) else f"{100 * delta:+.2f}")
        cells += [_pct(row[f"{head}_IoU_{c}"], 1) for c in class_names]
        cells += [
            f"{_pct(row[f'{ev}_mIoU_mean'])} ± {_pct(row[f'{ev}_mIoU_std'])}" for ev in others
        ]
        minutes = row["train_minutes_mean"]
        cells.append("-" if not math.isfinite(minutes) else f"{minutes:.1f}")
        md.write("| " + " | ".join(cells) + " |\n")
    if prepared:
        md.write("\nPrepared runs (made once):\n\n| run | " + f"{head} mIoU | ")
        md.write(" | ".join(f"{ev} mIoU" for ev in others) + (" | " if others else ""))
        md.write("train min |\n|" + "---|" * (3 + len(others)) + "\n")
        for run in prepared:
            rec = records[run.label]
            if not rec:
                md.write(f"| {grid.label(run.config)} | not finished |" + " |" * (1 + len(others)))
                md.write("\n")
                continue
            cells = [grid.label(run.config), _pct(value(rec, head))]
            cells += [_pct(value(rec, ev)) for ev in others]
            cells.append(f"{rec['train_seconds'] / 60:.1f}")
            md.write("| " + " | ".join(cells) + " |\n")
    md.write(f"\nWall time of all finished runs (training + evaluation): {total / 60:.1f} min.\n")
    paths = {"md": write_text(out / "summary.md", md.getvalue())}

    # CSV: one row per configuration, and one per run
    def csv_text(header: list[str], lines: list[list]) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
        return buf.getvalue()

    def num(x: Any) -> Any:
        return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else x

    header = [k for k in rows[0] if not k.endswith("_values")] if rows else []
    paths["csv"] = write_text(
        out / "summary.csv", csv_text(header, [[num(r[k]) for k in header] for r in rows])
    )
    run_header = ["config", "seed", "train_seconds", "eval_seconds", "best_val_mIoU"]
    run_header += [f"{ev}_mIoU" for ev in [head, *others]]
    run_header += [f"{head}_IoU_{c}" for c in class_names]
    lines = []
    for run in prepared + runs:
        rec = records[run.label]
        if not rec:
            continue
        line = [run.config, "" if run.seed is None else run.seed, rec["train_seconds"]]
        line += [rec["eval_seconds"], num(rec["best_val_mIoU"])]
        line += [num(value(rec, ev)) for ev in [head, *others]]
        line += [num(value(rec, head, "IoU", i)) for i in range(len(class_names))]
        lines.append(line)
    paths["runs"] = write_text(out / "runs.csv", csv_text(run_header, lines))

    # plot: mean ± std bars with each seed's value, one panel per evaluation
    evs = [head, *others]
    fig = Figure(figsize=(4.2 * len(evs), 0.45 * len(rows) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(evs), squeeze=False)[0]
    labels = [r["label"] for r in rows]
    for ax, ev in zip(axes, evs, strict=True):
        means = [100 * r[f"{ev}_mIoU_mean"] for r in rows]
        stds = [
            100 * r[f"{ev}_mIoU_std"] if math.isfinite(r[f"{ev}_mIoU_std"]) else 0 for r in rows
        ]
        ys = list(range(len(rows)))
        ax.barh(ys, means, xerr=stds, color="#9ecae1", edgecolor="#3182bd", capsize=3)
        for y, r in zip(ys, rows, strict=True):
            vals = [100 * v for v in r[f"{ev}_mIoU_values"]]
            ax.plot(vals, [y] * len(vals), "o", color="#08519c", markersize=3)
        ax.set_yticks(ys, labels)
        ax.invert_yaxis()
        ax.set_xlabel(f"{ev} mIoU (%)")
        ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    paths["png"] = write_bytes(out / "summary.png", buf.getvalue())
    return paths


# ----------------------------------------------------------------------------- entry point


def run_grid(cfg: Config) -> int:
    grid = load_grid(cfg.grid)
    lock = grid.lock if cfg.lock is None else cfg.lock
    prepared, runs = plan(grid)
    unknown = sorted(set(cfg.only) - set(grid.configs))
    if unknown:
        raise GridError(
            f"--only {unknown}: not configurations of {grid.path}: {list(grid.configs)}"
        )
    selected = [r for r in runs if not cfg.only or r.config in cfg.only]
    states = {r.label: run_state(r, cfg.python) for r in prepared + selected}
    if cfg.dry_run:
        ensure_data(grid, cfg.python, lock, dry_run=True)
        for run in prepared + selected:
            print(f"[{states[run.label]}] {run.label}: {shlex.join(run.command(cfg.python)[1:])}")
        return 0
    if not cfg.summary_only:
        ensure_data(grid, cfg.python, lock, dry_run=False)
        todo = [r for r in prepared + selected if states[r.label] != "done"]
        print(f"{len(todo)} of {len(prepared) + len(selected)} runs to do; out: {grid.out}")
        for i, run in enumerate(todo, 1):
            what = "continuing" if states[run.label] == "partial" else "starting"
            print(f"[{i}/{len(todo)}] {what} {run.label} ({run.script})", flush=True)
            record = execute(run, grid, cfg.python, lock)
            scores = ", ".join(
                f"{name} mIoU {100 * m['mIoU']:.2f}%" for name, m in record["metrics"].items()
            )
            print(f"  done in {record['train_seconds'] / 60:.1f} min: {scores}", flush=True)
            summarise(grid, prepared, runs)
    paths = summarise(grid, prepared, runs)
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    try:
        return run_grid(cfg)
    except (GridError, RuntimeError, FileNotFoundError) as exc:
        print(f"ablation: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ablation: interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
