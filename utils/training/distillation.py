"""Multi-resolution knowledge distillation as a task of the shared training loop.

FastSegFormer (Computers and Electronics in Agriculture 217, 108604, 2024) distils a
Swin-T-Att-UNet teacher, run at 512x512, into the FastSegFormer student, run on the same images
bilinearly resized to 224x224:

    loss = CE(student) + nfd_weight * NFD + kd_weight * P&KL     (paper: 5 and 0.5)

``--kd`` names the distillation terms, joined by "+" in any order (`KD_TERMS`): ``logits``
(P&KL), ``nfd`` (NFD), ``dist`` (DIST, Huang et al., NeurIPS 2022) and ``cwd`` (CWD, Shu et
al., ICCV 2021). ``--kd logits`` is the paper's KD1, ``--kd logits+nfd`` its KD2; ``--kd
dist``, ``--kd logits+cwd`` etc. combine them, each term with its own weight. The losses are
the pure functions of `utils/training/kd_losses.py`; this module holds what has state:

- `DistillationTask`: the task `utils/training/trainer.py` drives (contract in
  `utils/training/task.py`). Its
  ``.model`` is the student, the network that is evaluated and saved. The teacher is frozen,
  kept in eval mode and run under ``torch.inference_mode()`` so none of its activations are
  kept for backward (the original runs it with autograd on: the main cost of its 11.8 GB at
  batch 6). It runs inside the loop's autocast, so in the run's precision, and in the memory
  format measured for its own family (``--teacher-memory-format``, see
  `utils/training/speed.py`). Its logits are resized to the student's once per batch.
- `Connectors`: one learned 1x1 conv per feature pair, student channels -> teacher channels.
  They are trained with the student and saved under the checkpoint's ``"extra"`` (via
  ``extra_state()``); the exported student does not contain them.
- `DistillConfig`: the training config plus the teacher, the student and the distillation
  loss, with the original's distillation defaults; `validate_distill_config` checks it.

The teacher is deliberately not a registered submodule: ``task.state_dict()`` and
``task.parameters()`` hold only the student and the connectors, and DistributedDataParallel
neither broadcasts nor synchronises the teacher's 49M parameters and buffers. ``task.to(...)``
still moves it (see `DistillationTask._apply`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import nets
from nets.checkpoint import is_project_checkpoint, load_checkpoint, read_checkpoint
from nets.profile import count_params
from nets.registry import build_model, model_from_checkpoint
from utils.training.config import ConfigError, TrainConfig, flag
from utils.training.kd_losses import cwd_loss, dist_loss, nfd_loss, pkl_loss, resize_to
from utils.training.speed import MEMORY_FORMATS, SpeedPlan, as_memory_format, to_memory_format
from utils.training.task import SegLossFn

# The distillation terms `--kd` combines with "+", each the name of its logged loss term too:
# logits: the paper's P&KL (logged "pkl"); nfd: its NFD on paired feature maps; dist: DIST on
# the logits; cwd: CWD on the logits.
KD_TERMS = ("logits", "nfd", "dist", "cwd")
# the paper's KD1 (P&KL) and KD2 (P&KL + NFD)
KD_MODES = ("logits", "logits+nfd")


def parse_kd(kd: str) -> tuple[str, ...]:
    """The terms of a ``--kd`` value, in `KD_TERMS` order: "nfd+logits" -> ("logits", "nfd").

    ValueError naming the unknown or repeated term, or an empty value.
    """
    terms = [t.strip().lower() for t in str(kd).split("+")]
    if not all(terms):
        raise ValueError(
            f"{kd!r} is not a '+'-joined list of terms; valid terms: {', '.join(KD_TERMS)} "
            "(e.g. logits+nfd or dist)"
        )
    unknown = [t for t in terms if t not in KD_TERMS]
    if unknown:
        raise ValueError(
            f"unknown kd term(s) {', '.join(map(repr, unknown))} in {kd!r}; valid terms: "
            f"{', '.join(KD_TERMS)}, joined by '+' (e.g. logits+nfd or dist)"
        )
    if len(set(terms)) != len(terms):
        raise ValueError(f"{kd!r} names a term twice")
    return tuple(t for t in KD_TERMS if t in terms)


def parse_pairs(specs: Sequence[str]) -> list[tuple[int, int]]:
    """Feature pairs from "student_index:teacher_index" strings, e.g. ["0:0", "6:6"]."""
    pairs = []
    for spec in specs:
        parts = str(spec).split(":")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(
                f"feature pair {spec!r} is not 'student_index:teacher_index' (e.g. 0:0 or 6:5)"
            )
        pairs.append((int(parts[0]), int(parts[1])))
    return pairs


def feature_channels(model: nn.Module, input_size: Sequence[int]) -> list[int]:
    """Channels of the maps ``model(x, return_features=True)`` returns, from one probe forward.

    The probe runs on one zero image of `input_size` (h, w) in eval mode under no_grad, on the
    model's device, and restores the model's train/eval mode afterwards.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            features, _ = model(
                torch.zeros(1, 3, int(input_size[0]), int(input_size[-1]), device=device),
                return_features=True,
            )
    finally:
        model.train(was_training)
    return [int(f.shape[1]) for f in features]


def resize_labels(labels: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest resize of (B, H, W) integer labels to (B, *size); the ignore value survives."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0].to(labels.dtype)


def teacher_path(name: str, checkpoint: str | Path | None) -> Path:
    """The teacher checkpoint's path; ConfigError when none is given or the file is missing."""
    if not checkpoint:
        raise ConfigError(
            f"--teacher-checkpoint is required: the trained {name} weights to distil from. "
            "Train a teacher with `python train.py --model swin_t_att_unet --input-size 512` "
            "and pass its best.pth, or pass the authors' teacher_Swin_T_Att_Unet_input_512.pth"
        )
    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"--teacher-checkpoint {path}: file not found")
    return path


def load_teacher(
    name: str,
    checkpoint: str | Path | None,
    num_classes: int,
    map_location: str = "cpu",
    *,
    trust: bool = False,
) -> nn.Module:
    """The trained teacher, frozen and in eval mode, from a project or an original checkpoint.

    A project checkpoint (written by train.py) rebuilds its own model (with its options): `name`
    must match it.
    Any other file is loaded into ``nets.build_model(name, num_classes)`` by
    ``nets.load_checkpoint`` (e.g. the authors' teacher_Swin_T_Att_Unet_input_512.pth).
    Backbone-only (ImageNet) weights are refused: an untrained decoder has nothing to teach.
    The file is read safely (``nets.checkpoint.read_checkpoint``) unless `trust`.
    """
    path = teacher_path(name, checkpoint)
    obj = read_checkpoint(path, map_location, trust=trust)
    if is_project_checkpoint(obj):
        spec = obj["model"]  # a project checkpoint names the model it holds
        if name and spec["name"] != name:
            raise ValueError(
                f"--teacher-checkpoint {path} holds a {spec['name']} model, not --teacher {name}"
            )
        teacher, _ = model_from_checkpoint(obj, map_location, source=path)
    else:
        teacher = build_model(name, num_classes)
        report = load_checkpoint(teacher, obj, source=path)
        if report.layout.startswith("backbone"):
            raise ValueError(
                f"--teacher-checkpoint {path} holds only backbone weights ({report.layout}); "
                "distillation needs a fully trained teacher"
            )
    if int(getattr(teacher, "num_classes", num_classes)) != num_classes:
        raise ValueError(
            f"--teacher-checkpoint {path} predicts {teacher.num_classes} classes, the student "
            f"{num_classes} (--num-classes)"
        )
    return teacher.requires_grad_(False).eval()


class Connectors(nn.ModuleList):
    """One 1x1 conv per feature pair: student channels -> teacher channels (with bias)."""

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        if len(student_channels) != len(teacher_channels):
            raise ValueError(
                f"{len(student_channels)} student and {len(teacher_channels)} teacher channel "
                "counts: one of each per feature pair"
            )
        super().__init__(
            nn.Conv2d(cs, ct, kernel_size=1)
            for cs, ct in zip(student_channels, teacher_channels, strict=True)
        )


class DistillationTask(nn.Module):
    """Student trained by CE + the weighted distillation terms of `kd` against a frozen teacher.

    ``forward(images, labels)`` takes the loader's batch at the teacher's size: images
    (B, 3, Ht, Wt) float, labels (B, Ht, Wt) long (255 = ignore). The teacher sees the images
    as they are; the student sees them bilinearly resized to `student_size` and is trained
    against the labels nearest-resized to that size. Returns the named terms of `seg_loss`
    (``"ce"`` etc.), one unweighted term per distillation term of `kd` (``"pkl"`` for logits,
    ``"nfd"``, ``"dist"``, ``"cwd"``) and the weighted total ``"loss"``.

    Args:
        student: trainable model honouring ``model(x, return_features=True) -> (features,
            logits)``; becomes ``self.model``.
        teacher: same contract; frozen here (requires_grad False, eval mode).
        seg_loss: (logits, labels) -> scalar, optionally with ``.terms()`` (utils.training.losses).
        student_size: (h, w) the student runs at (224, 224 in the paper).
        teacher_size: (h, w) the teacher runs at; used to probe its channels (512, 512).
        kd: the terms, "+"-joined (`parse_kd`): "logits" (KD1: P&KL), "logits+nfd" (KD2),
            "dist", "cwd", or any other combination of `KD_TERMS`.
        temperature, k1: P&KL's t and k1 (paper 2 and 0.5).
        kd_weight, nfd_weight: weights of P&KL and NFD in the total (paper 0.5 and 5).
        dist_weight, dist_tau, dist_beta, dist_gamma: DIST's weight in the total, temperature
            and inter-/intra-class weights (the reference segmentation code: 1, 1, 1, 1).
        cwd_weight, cwd_tau: CWD's weight in the total and temperature (the reference
            segmentation code on logits: 3 and 4).
        feature_pairs: (student_index, teacher_index) into the two feature lists; None pairs
            them by index, as the original: (0, 0), (1, 1), ... up to the shorter list.
        teacher_memory_format: the teacher's layout under ``set_memory_format``: auto (the
            measured default of its family), channels_last or nchw.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        seg_loss: SegLossFn,
        *,
        student_size: Sequence[int] = (224, 224),
        teacher_size: Sequence[int] = (512, 512),
        kd: str = "logits+nfd",
        temperature: float = 2.0,
        k1: float = 0.5,
        kd_weight: float = 0.5,
        nfd_weight: float = 5.0,
        dist_weight: float = 1.0,
        dist_tau: float = 1.0,
        dist_beta: float = 1.0,
        dist_gamma: float = 1.0,
        cwd_weight: float = 3.0,
        cwd_tau: float = 4.0,
        feature_pairs: Sequence[tuple[int, int]] | None = None,
        teacher_memory_format: str = "auto",
    ) -> None:
        super().__init__()
        try:
            self.terms = parse_kd(kd)
        except ValueError as exc:
            raise ValueError(f"unknown kd mode: {exc}") from None
        if teacher_memory_format not in MEMORY_FORMATS:
            raise ValueError(
                f"unknown teacher memory format {teacher_memory_format!r}: expected one of "
                f"{MEMORY_FORMATS}"
            )
        self.teacher_memory_choice = teacher_memory_format
        self.memory_format = "nchw"  # of the student, connectors and student inputs
        self.teacher_memory_format = "nchw"  # of the teacher and its inputs
        self.model = student
        self.seg_loss = seg_loss
        self.student_size = (int(student_size[0]), int(student_size[-1]))
        self.teacher_size = (int(teacher_size[0]), int(teacher_size[-1]))
        self.kd = "+".join(self.terms)
        self.temperature = float(temperature)
        self.k1 = float(k1)
        self.kd_weight = float(kd_weight)
        self.nfd_weight = float(nfd_weight)
        self.dist_weight = float(dist_weight)
        self.dist_tau = float(dist_tau)
        self.dist_beta = float(dist_beta)
        self.dist_gamma = float(dist_gamma)
        self.cwd_weight = float(cwd_weight)
        self.cwd_tau = float(cwd_tau)
        self.uses_features = "nfd" in self.terms

        teacher.requires_grad_(False)
        teacher.eval()
        # Not registered as a submodule on purpose (module docstring): no state_dict, no DDP.
        object.__setattr__(self, "teacher", teacher)

        self.feature_pairs: list[tuple[int, int]] = []
        self.connectors = Connectors([], [])
        if self.uses_features:
            student_ch = feature_channels(student, self.student_size)
            teacher_ch = feature_channels(teacher, self.teacher_size)
            if feature_pairs is None:
                feature_pairs = [(i, i) for i in range(min(len(student_ch), len(teacher_ch)))]
            self.feature_pairs = [(int(s), int(t)) for s, t in feature_pairs]
            if not self.feature_pairs:
                raise ValueError(f"kd={self.kd!r} (NFD) needs at least one feature pair")
            for s, t in self.feature_pairs:
                if not (-len(student_ch) <= s < len(student_ch)) or not (
                    -len(teacher_ch) <= t < len(teacher_ch)
                ):
                    raise ValueError(
                        f"feature pair ({s}, {t}) out of range: the student returns "
                        f"{len(student_ch)} feature maps {student_ch}, the teacher "
                        f"{len(teacher_ch)} {teacher_ch} (channels listed)"
                    )
            self.connectors = Connectors(
                [student_ch[s] for s, _ in self.feature_pairs],
                [teacher_ch[t] for _, t in self.feature_pairs],
            )

    def describe(self) -> str:
        """One line for the run's log: the teacher, the terms with their weights, NFD pairs."""
        name = getattr(self.teacher, "build_config", {}).get("name", type(self.teacher).__name__)
        millions = count_params(self.teacher) / 1e6
        pairs = ", ".join(
            f"{s}:{t} ({c.in_channels}->{c.out_channels})"
            for (s, t), c in zip(self.feature_pairs, self.connectors, strict=True)
        )
        h, w = self.teacher_size
        weights = {
            "logits": f"{self.kd_weight:g} P&KL (t {self.temperature:g}, k1 {self.k1:g})",
            "nfd": f"{self.nfd_weight:g} NFD",
            "dist": (
                f"{self.dist_weight:g} DIST (tau {self.dist_tau:g}, beta {self.dist_beta:g}, "
                f"gamma {self.dist_gamma:g})"
            ),
            "cwd": f"{self.cwd_weight:g} CWD (T {self.cwd_tau:g})",
        }
        loss = " + ".join(weights[t] for t in self.terms)
        return (
            f"distilling from teacher {name} ({millions:.2f}M) at {h}x{w} | kd {self.kd}: "
            f"loss = seg + {loss} | NFD pairs: {pairs or 'none'}"
        )

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> DistillationTask:
        """Move/cast the unregistered teacher together with the task (``.to``, ``.cuda``...)."""
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> DistillationTask:
        """Train/eval the student and connectors; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def set_memory_format(self, plan: SpeedPlan) -> dict[str, str]:
        """Student and connectors in the plan's format for the student, the teacher in its own
        (``teacher_memory_format``; auto: its family's measured default)."""
        self.memory_format = plan.memory_format_of(self.model)
        self.teacher_memory_format = plan.memory_format_of(self.teacher, self.teacher_memory_choice)
        to_memory_format(self.model, self.memory_format)
        to_memory_format(self.connectors, self.memory_format)
        to_memory_format(self.teacher, self.teacher_memory_format)
        return {
            "memory_format": self.memory_format,
            "teacher_memory_format": self.teacher_memory_format,
        }

    def run_teacher(
        self, images: Tensor, logits_size: Sequence[int] | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """Teacher features and logits for (B, 3, Ht, Wt) images, without an autograd graph.

        The teacher runs in inference mode (no graph, no version counters) and its logits are
        resized there to `logits_size` (the student's logits) when given, once per batch.
        What is returned are ordinary tensors (inference-mode tensors cannot be saved for the
        student's backward): copies where nothing else made new ones.
        """
        images = as_memory_format(images, self.teacher_memory_format)
        with torch.inference_mode():
            if not self.uses_features:
                features, logits = [], self.teacher(images)
            else:
                features, logits = self.teacher(images, return_features=True)
            if logits_size is not None:
                logits = resize_to(logits, logits_size)  # (B, K, *logits_size)
        return [f.clone() for f in features], logits.clone()

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        # images (B, 3, Ht, Wt) at the teacher's size, labels (B, Ht, Wt)
        student_images = resize_to(images, self.student_size)  # (B, 3, Hs, Ws)
        student_images = as_memory_format(student_images, self.memory_format)
        student_labels = resize_labels(labels, self.student_size)  # (B, Hs, Ws)
        if not self.uses_features:
            student_features, student_logits = [], self.model(student_images)
        else:
            student_features, student_logits = self.model(student_images, return_features=True)
        # teacher logits come back at the student's logit size (B, K, hs, ws)
        teacher_features, teacher_logits = self.run_teacher(images, student_logits.shape[-2:])

        if hasattr(self.seg_loss, "terms"):
            terms = dict(self.seg_loss.terms(student_logits, student_labels))
        else:
            terms = {"ce": self.seg_loss(student_logits, student_labels)}
        loss = sum(terms.values())

        if "logits" in self.terms:
            terms["pkl"] = pkl_loss(student_logits, teacher_logits, self.temperature, self.k1)
            loss = loss + self.kd_weight * terms["pkl"]
        if "dist" in self.terms:
            terms["dist"] = dist_loss(
                student_logits, teacher_logits, self.dist_tau, self.dist_beta, self.dist_gamma
            )
            loss = loss + self.dist_weight * terms["dist"]
        if "cwd" in self.terms:
            terms["cwd"] = cwd_loss(student_logits, teacher_logits, self.cwd_tau)
            loss = loss + self.cwd_weight * terms["cwd"]
        if self.uses_features:
            terms["nfd"] = nfd_loss(
                [student_features[s] for s, _ in self.feature_pairs],
                [teacher_features[t] for _, t in self.feature_pairs],
                list(self.connectors),
            )
            loss = loss + self.nfd_weight * terms["nfd"]
        terms["loss"] = loss
        return terms

    def extra_state(self) -> dict:
        """Connectors and their pairs, saved under the checkpoint's "extra"."""
        if not self.feature_pairs:
            return {}
        return {
            "kd_connectors": self.connectors.state_dict(),
            "kd_feature_pairs": [list(p) for p in self.feature_pairs],
        }

    def load_extra_state(self, state: dict) -> None:
        """Restore connectors saved by `extra_state` (resuming a distillation run)."""
        if not state or "kd_connectors" not in state:
            return
        if not self.feature_pairs:
            raise ValueError(
                "the checkpoint holds NFD connectors (a run with the nfd term, e.g. --kd "
                f"logits+nfd) but this run (--kd {self.kd}) has none; resume it with its --kd"
            )
        saved_pairs = [tuple(p) for p in state.get("kd_feature_pairs", [])]
        if saved_pairs and saved_pairs != self.feature_pairs:
            raise ValueError(
                f"the checkpoint's connectors belong to feature pairs {saved_pairs}, this run "
                f"distils {self.feature_pairs}; resume with the same --kd and --kd-pairs"
            )
        self.connectors.load_state_dict(state["kd_connectors"])


@dataclass
class DistillConfig(TrainConfig):
    """TrainConfig plus the teacher, the student and the distillation loss (the paper's KD2).

    The student is the loop's model: ``model`` and ``pretrained`` are not flags here but copies
    of ``student`` and ``student_checkpoint``, so checkpoints and config.yaml name the model
    they hold as train.py's do.
    """

    model: str = field(init=False, default="")  # = student
    pretrained: str = field(init=False, default="")  # = student_checkpoint
    teacher: str = "swin_t_att_unet"  # teacher model name (nets.MODELS)
    teacher_checkpoint: str = ""  # trained teacher weights, project or original (required)
    teacher_input_size: tuple[int, ...] = (512, 512)  # teacher (and loader) input h w
    student: str = "fastsegformer_p"  # student model name (nets.MODELS)
    student_checkpoint: str = ""  # student weights to start from: a file or 'imagenet'
    kd: str = "logits+nfd"  # KD terms joined by '+': logits (P&KL), nfd, dist, cwd
    kd_temperature: float = 2.0  # P&KL temperature t
    kd_k1: float = 0.5  # P&KL weight k1 of the KL part (1 - k1 for the MSE part)
    kd_weight: float = 0.5  # weight of P&KL in the total loss
    nfd_weight: float = 5.0  # weight of NFD in the total loss (KD2)
    dist_weight: float = 1.0  # weight of DIST in the total loss
    dist_tau: float = 1.0  # DIST temperature tau
    dist_beta: float = 1.0  # DIST weight beta of the inter-class relation
    dist_gamma: float = 1.0  # DIST weight gamma of the intra-class relation
    cwd_weight: float = 3.0  # weight of CWD in the total loss
    cwd_tau: float = 4.0  # CWD temperature T
    kd_pairs: tuple[str, ...] = ()  # NFD feature pairs student:teacher, e.g. 5:5 (empty: i:i)
    teacher_memory_format: Literal[MEMORY_FORMATS] = "auto"  # teacher layout (auto: measured)
    freeze_epochs: int = 0  # first epochs with the student's backbone frozen (0: never)
    batch_size: int = 6  # global batch size (the original's distillation batch)
    freeze_batch_size: int = 6  # global batch size while frozen

    def __post_init__(self) -> None:
        super().__post_init__()
        self.model, self.pretrained = self.student, self.student_checkpoint
        # canonical order, so "nfd+logits" and "logits+nfd" save and name runs alike; an
        # invalid value is left as given for validate_distill_config to report under --kd
        with contextlib.suppress(ValueError):
            self.kd = "+".join(parse_kd(self.kd))
        if len(self.teacher_input_size) == 1:
            self.teacher_input_size = (int(self.teacher_input_size[0]),) * 2
        self.teacher_input_size = tuple(int(s) for s in self.teacher_input_size)

    def run_prefix(self) -> str:
        """An unnamed distillation run: kd_<terms>_<student>_<date-time>."""
        return f"kd_{self.kd.replace('+', '_')}_{self.student}"


def validate_distill_config(cfg: DistillConfig) -> None:
    """ConfigError naming the first invalid distillation field; builds nothing.

    Runs before the loop's own `validate_config`, so a bad student name or file is reported
    under the flag the user gave (--student...), not the loop's --model / --pretrained.
    """
    for name in ("student", "teacher"):
        if getattr(cfg, name) not in nets.MODELS:
            valid = ", ".join(sorted(nets.MODELS))
            raise ConfigError(
                f"{flag(name)}={getattr(cfg, name)!r}: unknown model; valid names: {valid}"
            )
    weights = cfg.student_checkpoint
    if weights and weights != "imagenet" and not Path(weights).is_file():
        raise ConfigError(f"--student-checkpoint={weights!r}: file not found")
    try:
        terms = parse_kd(cfg.kd)
    except ValueError as exc:
        raise ConfigError(f"--kd={cfg.kd!r}: {exc}") from None
    for name in ("kd_temperature", "dist_tau", "cwd_tau"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{flag(name)}={getattr(cfg, name)}: must be > 0")
    if not 0 <= cfg.kd_k1 <= 1:
        raise ConfigError(f"--kd-k1={cfg.kd_k1}: must be in [0, 1]")
    for name in ("kd_weight", "nfd_weight", "dist_weight", "dist_beta", "dist_gamma", "cwd_weight"):
        if not getattr(cfg, name) >= 0:
            raise ConfigError(f"{flag(name)}={getattr(cfg, name)}: must be >= 0")
    size = cfg.teacher_input_size
    if len(size) != 2 or any(s < 32 or s % 32 for s in size):
        raise ConfigError(
            f"--teacher-input-size={list(size)}: expected one or two multiples of 32, e.g. 512"
        )
    try:
        parse_pairs(cfg.kd_pairs)
    except ValueError as exc:
        raise ConfigError(f"--kd-pairs={list(cfg.kd_pairs)}: {exc}") from None
    if cfg.kd_pairs and "nfd" not in terms:
        raise ConfigError(
            f"--kd-pairs: feature pairs need --kd logits+nfd or another --kd with the nfd term "
            f"(--kd {cfg.kd} uses no features)"
        )
    teacher_path(cfg.teacher, cfg.teacher_checkpoint)
