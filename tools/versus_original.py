"""This project's FastSegFormer against the official code, timed in the same rounds on this CPU.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) comes
with an official repository. A speed comparison with it holds only when both are timed on the
same machine in the same run: on a CPU whose speed drifts, figures from two runs differ by the
drift. This tool:

1. imports the FastSegFormer class of a clone of the official repository that you made
   (`--original PATH`; the project never copies its code), without editing its files. The
   original imports `timm.models.layers.helpers`, which current timm moved to
   `timm.layers.helpers`; while the original is imported, every `timm.models.layers.<name>`
   that no longer exists resolves to `timm.layers.<name>`. The original's package is also
   called `nets`, so it is imported in a process of its own, with this project's `nets` put
   aside;
2. builds -P (PoolFormer-S12) and -E (EfficientFormerV2-S0) as its `unet.py` does (multiscale
   pyramid, image reconstruction branch, 4 classes, its own initialisation) and exports them at
   224x224 as its own export does (`Unet.convert_to_onnx`: the legacy TorchScript exporter,
   opset 12, constant folding, input "images", output "output"; it then runs onnx-simplifier,
   which is not installed here: ONNX Runtime's and OpenVINO's graph optimisers do that work at
   load time), and converts that ONNX file to an OpenVINO IR;
3. builds this project's -P and -E (random weights, or trained ones with `--checkpoint`) on
   every CPU backend of utils.deploy.backends (the files `--backend NAME` of the other scripts
   deploys);
4. times every row in the same interleaved rounds (utils/deploy/rounds.py): each round, every
   row once, each in a fresh process; the original on ONNX Runtime fp32 and on OpenVINO (fp32,
   and bf16 where the CPU computes it natively, OpenVINO's own default there), ours on every
   backend. The harness checks itself as speeding.py does (`--check-bias`).

Output: a Markdown table on stdout (median over rounds, the rounds' range, the speed-up against
the original's ONNX Runtime fp32 row of the same model, taken round by round), the same rows
as JSON with `--json FILE` (keys `code` "original"/"project", `model`, `backend`,
`latency_ms`, `round_latencies_ms`, `speedup_vs_original`, ...), and
OUT/versus_<date-time>.json with the machine (CPU, flags, load average) and the config.

    python tools/versus_original.py --original ../FastSegFormer
    python tools/versus_original.py --original ../FastSegFormer --rounds 5 --threads 2 \\
        --checkpoint logs/p/best.pth logs/e/best.pth --json logs/versus/rows.json
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/versus_original.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import nets  # noqa: E402
from nets.checkpoint import CheckpointError, read_project_checkpoint  # noqa: E402
from utils.cli import config_to_dict, parse_config  # noqa: E402
from utils.deploy.backends import (  # noqa: E402
    BACKENDS,
    INT8_BACKENDS,
    ov_precision,
    runtime_available,
)
from utils.deploy.build import build_backend, deployed_file, open_deployed  # noqa: E402
from utils.deploy.openvino_export import save_openvino  # noqa: E402
from utils.deploy.optimize import ImageCalibrationReader  # noqa: E402
from utils.deploy.rounds import (  # noqa: E402
    BIAS_CHECKS,
    BIAS_TOLERANCE,
    bare_median,
    bias_fields,
    in_fresh_process,
    over_rounds,
    ratio_by_round,
    schedule,
    wants_bias_check,
)
from utils.deploy.timing import benchmark, environment  # noqa: E402
from utils.deploy.torch_runtime import TorchBackend  # noqa: E402
from utils.fileio import write_text  # noqa: E402
from utils.inference.calibration import calibration_photos  # noqa: E402

# How the original's unet.py builds the two released students (4 classes)
ORIGINAL_CONFIGS: dict[str, dict[str, Any]] = {
    "fastsegformer_p": {"backbone": "poolformer_s12", "Pyramid": "multiscale", "cnn_branch": True},
    "fastsegformer_e": {
        "backbone": "efficientformerV2_s0",
        "Pyramid": "multiscale",
        "cnn_branch": True,
    },
}
ORIGINAL_MODULE = "nets.FastSegFormer.fast_segformer"  # where the clone keeps the class
ORIGINAL_BACKENDS = ("ort-fp32", "ov-fp32", "ov-bf16")  # the original's ONNX file runs on these
REFERENCE = ("original", "ort-fp32")  # speed-ups are against this row of the same model
RUNTIME_OF = {"torch": "torch", "ort": "onnxruntime", "ov": "openvino"}


@dataclass
class Config:
    # ------------------------------------------------------------------ editable block
    original: str = ""  # clone of the official FastSegFormer repository (required)
    models: tuple[Literal[tuple(ORIGINAL_CONFIGS)], ...] = tuple(ORIGINAL_CONFIGS)  # both
    checkpoint: tuple[str, ...] = ()  # our trained checkpoints of those models (default: random)
    trust_checkpoint: bool = False  # unpickle --checkpoint in full: trusted files only
    backends: tuple[Literal[BACKENDS], ...] = BACKENDS  # ours: every CPU backend
    original_backends: tuple[Literal[ORIGINAL_BACKENDS], ...] = ORIGINAL_BACKENDS  # the original's
    num_classes: int = 4  # classes of the models built at random (the paper's 4)
    input_size: int = 224  # the paper's input (EfficientFormerV2-S0 needs 224)
    opset: int = 12  # ONNX opset of the original's export (its unet.py uses 12)
    rounds: int = 3  # rounds: every row once per round, each in a fresh process, interleaved
    runs: int = 100  # timed calls per row and round
    warmup: int = 10  # untimed calls before timing
    threads: int = 0  # inference threads of every runtime (0: each runtime's default)
    calib_data: str = "data/synthetic_oranges"  # VOC root whose train photos calibrate INT8
    calib_images: int = 64  # INT8 calibration photos (at most)
    check_bias: Literal[tuple(BIAS_CHECKS)] = "first"  # rows also timed in a bare process
    isolation: Literal["process", "none"] = "process"  # none: rows timed in this process (tests)
    out: str = "logs/versus"  # folder for the exported files and the JSON document
    json: str = ""  # FILE: also write the rows (a JSON list) there
    # ------------------------------------------------------------------ end of editable block


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the original
class TimmMovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`timm.models.layers.<name>` resolves to `timm.layers.<name>` where only the new exists.

    Asked only after the normal finders failed (appended to sys.meta_path), so a timm that still
    has the old module keeps it.
    """

    OLD, NEW = "timm.models.layers.", "timm.layers."

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if not name.startswith(self.OLD):
            return None
        if importlib.util.find_spec(self.NEW + name[len(self.OLD) :]) is None:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.NEW + spec.name[len(self.OLD) :])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is timm's own, already imported."""


def _is_nets(module: str) -> bool:
    return module == "nets" or module.startswith("nets.")


@contextlib.contextmanager
def original_code(path: str | Path) -> Iterator[None]:
    """The clone at `path` importable as `nets` (ours put aside) with the timm shims, restored
    on exit. Its modules register timm model names; run it in a process of its own."""
    path = Path(path).resolve()
    module_file = path / Path(*ORIGINAL_MODULE.split(".")).with_suffix(".py")
    if not module_file.is_file():
        raise FileNotFoundError(
            f"--original {path}: no {module_file.relative_to(path)} there; expected a clone of "
            "the official FastSegFormer repository"
        )
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if _is_nets(k)}
    finder = TimmMovedModules()
    sys.meta_path.append(finder)
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if _is_nets(k)]:
            del sys.modules[k]
        sys.modules.update(ours)


def export_original(cfg: Config, model: str, folder: Path) -> dict[str, str]:
    """The original's `model` exported as its own code does, and as an OpenVINO IR.

    Runs in a fresh process (its `nets` package and timm registrations stay there).
    Returns {"onnx": path, "openvino": path}.
    """
    import openvino as ov

    # its import prints notes and warns about its timm registrations; the legacy exporter warns
    # that it is deprecated: none of it is for this tool's reader
    with (
        original_code(cfg.original),
        contextlib.redirect_stdout(sys.stderr),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        original = importlib.import_module(ORIGINAL_MODULE).FastSegFormer
        torch.manual_seed(0)
        net = original(cfg.num_classes, pretrained=False, **ORIGINAL_CONFIGS[model]).eval()
        onnx_path = folder / f"original_{model}.onnx"
        im = torch.zeros(1, 3, cfg.input_size, cfg.input_size)
        torch.onnx.export(
            net, im, str(onnx_path), verbose=False, opset_version=cfg.opset,
            training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True,
            input_names=["images"], output_names=["output"], dynamic_axes=None, dynamo=False,
        )  # fmt: skip
    xml = save_openvino(ov.convert_model(str(onnx_path)), folder / f"original_{model}.xml")
    return {"onnx": str(onnx_path), "openvino": str(xml)}


# ------------------------------------------------------------------------------ ours
def our_model(cfg: Config, name: str) -> tuple[torch.nn.Module, dict]:
    """Our `name` model: the --checkpoint of that model if one is given, else seeded random
    weights; and its preprocessing (mean/std) for calibration."""
    for path in cfg.checkpoint:
        model, ckpt = nets.model_from_checkpoint(
            path, map_location="cpu", trust=cfg.trust_checkpoint
        )
        if ckpt["model"]["name"] == name:
            return model.eval(), {**(ckpt.get("preprocess") or {}), "checkpoint": str(path)}
    torch.manual_seed(0)
    return nets.build_model(name, num_classes=cfg.num_classes).eval(), {}


def prepare_ours(cfg: Config, name: str, folder: Path) -> dict[str, Any]:
    """Every backend's file of our `name` model in `folder` ({backend: path, or a skip reason})."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    model, pre = our_model(cfg, name)
    size = (cfg.input_size, cfg.input_size)
    photos, note = calibration_photos(cfg.calib_data, "train", cfg.calib_images)
    reader = ImageCalibrationReader(photos, size, "images", pre.get("mean"), pre.get("std"))
    files: dict[str, Any] = {"checkpoint": pre.get("checkpoint"), "calibration": note}
    for backend in cfg.backends:
        if backend == "torch":
            continue
        missing = runtime_available(backend)
        if missing:
            files[backend] = {"skipped": missing}
            continue
        calibration = reader if backend in INT8_BACKENDS else None
        build_backend(backend, model, size, threads=cfg.threads, calibration=calibration,
                      workdir=folder)  # fmt: skip
        files[backend] = str(deployed_file(backend, folder))
    return files


# ------------------------------------------------------------------------------ timing
@dataclass
class Row:
    """One line of the table, and what each round measured of it."""

    code: str  # "original" or "project"
    model: str
    backend: str
    file: str | None  # the file it runs (None: eager PyTorch)
    skipped: str | None = None
    rounds: list[dict] = field(default_factory=list)
    bare_ms: list[float | None] = field(default_factory=list)
    check_bias: bool = False

    @property
    def runtime(self) -> str:
        return RUNTIME_OF[self.backend.split("-")[0]]


def time_row(cfg: Config, code: str, model: str, backend: str, file: str | None) -> dict:
    """One round of one row: the runtime of `backend` on `file` (eager: our model rebuilt),
    warmed up and timed (utils.deploy.timing.benchmark) on a seeded random batch of 1."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if backend == "torch":
        runtime = TorchBackend(our_model(cfg, model)[0], "cpu")
    else:
        runtime = open_deployed(backend, file, cfg.threads)
    x = np.random.default_rng(0).random((1, 3, cfg.input_size, cfg.input_size), np.float32)
    t = benchmark(lambda: runtime(x), cfg.runs, cfg.warmup)
    return {"latency_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms,
            "min_ms": t.min_ms}  # fmt: skip


def _bare(cfg: Config, row: Row) -> float | None:
    """The row's file in a bare process of its runtime, same threads and precision (ms)."""
    precision = ov_precision(row.backend) if row.runtime == "openvino" else "f32"
    return bare_median(row.runtime, row.file, (1, 3, cfg.input_size, cfg.input_size), log,
                       threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup,
                       precision=precision)  # fmt: skip


def plan(cfg: Config, out: Path) -> list[Row]:
    """Export and build every file (each model in processes of its own), then the rows."""
    rows: list[Row] = []
    for model in cfg.models:
        folder = out / model
        folder.mkdir(parents=True, exist_ok=True)
        log(f"{model}: exporting the original's (legacy exporter, opset {cfg.opset}) ...")
        original = in_fresh_process(export_original, cfg, model, folder)
        log(f"{model}: building ours on {', '.join(cfg.backends)} ...")
        prepare = in_fresh_process if cfg.isolation == "process" else _call
        ours = prepare(prepare_ours, cfg, model, folder / "project")
        for backend in cfg.original_backends:
            file = original["onnx"] if backend.startswith("ort") else original["openvino"]
            rows.append(Row("original", model, backend, file, runtime_available(backend)))
        for backend in cfg.backends:
            got = ours.get(backend)
            skipped = got["skipped"] if isinstance(got, dict) else None
            rows.append(Row("project", model, backend, got if isinstance(got, str) else None,
                            skipped))  # fmt: skip
    return rows


def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def measure(cfg: Config, rows: list[Row]) -> None:
    """Every row once per round, rounds interleaved; the bias check after its row."""
    run = in_fresh_process if cfg.isolation == "process" else _call
    checked: set[str] = set()
    for r, i in schedule(len(rows), cfg.rounds):
        row = rows[i]
        if row.skipped:
            continue
        log(f"round {r + 1}/{cfg.rounds}: {row.code} {row.model} / {row.backend} ...")
        try:
            got = run(time_row, cfg, row.code, row.model, row.backend, row.file)
        except Exception as e:  # a runtime that cannot take this file: keep the row, say why
            got = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        row.rounds.append(got)
        log(f"  {got['latency_ms']:.2f} ms" if "latency_ms" in got else f"  {got['error']}")
        if r == 0 and "latency_ms" in got:
            row.check_bias = wants_bias_check(cfg.check_bias, row.runtime, checked)
        if row.check_bias:
            row.bare_ms.append(_bare(cfg, row) if "latency_ms" in got else None)


def results(rows: list[Row]) -> list[dict[str, Any]]:
    """The JSON rows: figures over rounds and the speed-up against the original's ORT fp32."""
    out: list[dict[str, Any]] = []
    for row in rows:
        latencies = [r.get("latency_ms") for r in row.rounds]
        doc: dict[str, Any] = {"code": row.code, "model": row.model, "backend": row.backend,
                               "runtime": row.runtime, "file": row.file}  # fmt: skip
        errors = [r["error"] for r in row.rounds if "error" in r]
        if row.skipped or not any(v is not None for v in latencies):
            doc.update(status="skipped" if row.skipped else "error",
                       reason=row.skipped or (errors[0] if errors else "not run"),
                       latency_ms=None, round_latencies_ms=latencies)  # fmt: skip
        else:
            doc.update(status="ok", reason=errors[0] if errors else None, **over_rounds(latencies))
            if row.runtime == "openvino":
                doc["inference_precision"] = ov_precision(row.backend)
        if row.check_bias:
            doc.update(bias_fields(latencies, row.bare_ms))
        out.append(doc)
    reference = {d["model"]: d for d in out if (d["code"], d["backend"]) == REFERENCE}
    for doc in out:
        ref = reference.get(doc["model"])
        ok = ref is not None and ref["status"] == "ok" and doc["status"] == "ok"
        doc["speedup_vs_original"] = (
            ratio_by_round(ref["round_latencies_ms"], doc["round_latencies_ms"]) if ok else None
        )
    return out


def markdown(docs: list[dict[str, Any]], rounds: int) -> str:
    """The rows as a Markdown table, with a line saying how they were measured."""
    lines = [
        "| model | code | backend | latency ms | rounds min-max | spread | vs original ORT fp32 "
        "| vs bare |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in docs:
        if d["status"] != "ok":
            lines.append(f"| {d['model']} | {d['code']} | {d['backend']} | {d['status']}: "
                         f"{d['reason']} | | | | |")  # fmt: skip
            continue
        speedup = d["speedup_vs_original"]
        bare = f"{d['bias_ratio']:.2f} {d['bias_check']}" if d.get("bias_ratio") else "-"
        lines.append(
            f"| {d['model']} | {d['code']} | {d['backend']} | {d['latency_ms']:.2f} | "
            f"{d['round_min_ms']:.2f}-{d['round_max_ms']:.2f} | {d['round_spread_pct']:.0f}% | "
            f"{'-' if speedup is None else f'{speedup:.2f}x'} | {bare} |"
        )
    lines.append(
        f"\nlatency: median over {rounds} interleaved round(s), each row in a fresh process per "
        "round, batch 1; speed-up: against the original's ONNX Runtime fp32 row of the same "
        f"model, round by round; vs bare: row / the same file in a bare runtime process (ok "
        f"within {100 * BIAS_TOLERANCE:.0f}%)"
    )
    return "\n".join(lines)


def run(cfg: Config) -> list[dict[str, Any]]:
    if not cfg.original:
        raise SystemExit("--original PATH is required: a clone of the official FastSegFormer repo")
    if not (Path(cfg.original) / Path(*ORIGINAL_MODULE.split(".")).with_suffix(".py")).is_file():
        raise SystemExit(
            f"--original {cfg.original}: no {ORIGINAL_MODULE.replace('.', '/')}.py there; "
            "expected a clone of the official FastSegFormer repository"
        )
    if cfg.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {cfg.rounds}")
    for path in cfg.checkpoint:
        try:  # the safe reader: a refused or broken file stops here, before any child runs
            name = read_project_checkpoint(path, trust=cfg.trust_checkpoint)["model"]["name"]
        except CheckpointError as e:
            raise SystemExit(f"error: {e}") from e
        if name not in cfg.models:
            raise SystemExit(
                f"--checkpoint {path} holds a {name}; expected one of --models {cfg.models}"
            )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out) / stamp
    env = environment("cpu")
    log(
        f"{env['cpu']} (flags {' '.join(env['cpu_flags'])}), load average "
        f"{env['load_average_1_5_15']}, {cfg.rounds} round(s), isolation {cfg.isolation}"
    )
    rows = plan(cfg, out)
    measure(cfg, rows)
    docs = results(rows)
    env["load_average_after"] = environment("cpu")["load_average_1_5_15"]
    doc = {"environment": env, "config": config_to_dict(cfg), "rows": docs}
    write_text(Path(cfg.out) / f"versus_{stamp}.json", json.dumps(doc, indent=2))
    if cfg.json:
        write_text(Path(cfg.json), json.dumps(docs, indent=2))
    print(markdown(docs, cfg.rounds))
    return docs


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    return run(parse_config(Config, argv, description=__doc__))


if __name__ == "__main__":
    main()
