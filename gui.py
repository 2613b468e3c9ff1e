"""FastSegFormer desktop app: segment and grade navel-orange defects in photos, videos and cameras.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) came with
a PyQt desktop app for photos and video. This is its PySide6 (Qt 6) counterpart on the project's
shared pieces: a model file opened by `utils.inference.open_model.open_model` (a checkpoint on
any backend of utils.deploy.backends; an ONNX file or OpenVINO IR, which need no torch), the
threaded
`utils.line.video_pipeline.VideoPipeline` and the per-fruit `utils.line.grading`.

    python gui.py                                          # then use the toolbar
    python gui.py --checkpoint logs/run/best.pth --source line.mp4
    python gui.py --checkpoint model.xml --source photos/ --save-dir results/
    python gui.py --checkpoint logs/run/best.pth --rules grades.yaml   # your grading rules
    python gui.py --checkpoint logs/run/best.pth --backend ov-int8   # default: --backend auto
    QT_QPA_PLATFORM=offscreen python gui.py --checkpoint best.pth --source line.mp4 \\
        --screenshot docs/images/gui.png                   # run once, save the window, quit

The window shows the original and the result side by side, the colour legend, each defect
class's share of the image and of the fruit, each fruit's grade, and the end-to-end FPS; it
opens at 1240x720 (a 1280x800 screen shows it whole). Grading rules (--rules, or the Rules
button) go through the one loader of utils.line.rules and must limit the model's classes.
Without a usable X11 platform (Qt's xcb libraries missing, no display) the app says so in one
line, exit status 2, before Qt would abort.
"Save results" picks a folder: the displayed result is saved at once and later runs write
their overlays (images) or result video, masks and a grades CSV there.

Threads: the pipeline's stages run in worker threads; its write stage hands each result to
`PipelineWorker`, which keeps only the newest one and emits a Qt signal. Qt queues the signal
to the GUI thread, where all widgets are updated: no widget is touched from a worker thread.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from utils.cli import parse_config
from utils.data.labels import index_to_colour
from utils.data.preprocess import CLASS_NAMES, VOC_PALETTE, read_image
from utils.deploy.backends import BACKEND_CHOICES, check_backend_name
from utils.inference.open_model import NeedsFullInstall, model_names, open_model
from utils.inference.visualize import save_rgb
from utils.line.grading import FrameGrades, FruitCSVSink, GradeCSVSink, Grader
from utils.line.rules import GradingRules, RulesError, load_rules
from utils.line.video_pipeline import (
    IMAGE_SUFFIXES,
    CameraSource,
    FrameListSource,
    FrameResult,
    PipelineStats,
    VideoFileSource,
    VideoPipeline,
    VideoWriterSink,
    default_draw,
    image_folder_source,
)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
WINDOW_SIZE = (1240, 720)  # fits a 1280x800 laptop screen with its taskbar and window frame
FRAME_ROOM = (40, 80)  # what a window manager adds around the window (title bar, borders)
GRADE_QCOLOURS = {"premium": "#28c83c", "standard": "#d9a400", "reject": "#e61e1e"}


# Debian/Ubuntu packages of the libraries Qt's xcb plugin loads, where the name is not the
# library's own name and version (libxcb-icccm.so.4 -> libxcb-icccm4; Debian policy 8.1)
DEBIAN_PACKAGES = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libz.so.1": "zlib1g",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
}


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships the shared library `soname` (its usual name)."""
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    base, _, version = soname.partition(".so.")
    base = base.lower()
    if not version:
        return base
    return f"{base}-{version}" if base[-1:].isdigit() else f"{base}{version}"


def missing_libraries(library: Path) -> list[str]:
    """The shared libraries `library` needs (itself and through its dependencies) that the
    dynamic loader cannot find: every one from ldd, else the first one a ctypes load names."""
    ldd = shutil.which("ldd")
    if ldd is not None:
        out = subprocess.run([ldd, str(library)], capture_output=True, text=True, check=False)
        found = re.findall(r"^\s*(\S+) => not found", out.stdout, re.M)
        return list(dict.fromkeys(found))
    try:
        ctypes.CDLL(str(library))
    except OSError as err:
        name = re.match(r"([^:\s]+\.so[.\d]*): cannot open", str(err))
        return [name.group(1)] if name else [str(err)]
    return []


def qt_platform_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why Qt would abort when the app opens its window (one line), or None.

    Only Qt's X11 platform (xcb) is checked, before the QApplication is created: Qt aborts the
    process (status 134) when that plugin's libraries are missing or there is no display, with
    a message that does not always name the right library. Other platforms (offscreen,
    wayland, QT_QPA_PLATFORM) are left to Qt.
    """
    env = os.environ if env is None else env
    requested = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if requested and requested != "xcb":
        return None
    if not requested and (not sys.platform.startswith("linux") or env.get("WAYLAND_DISPLAY")):
        return None  # not X11, or a Wayland session Qt may use instead
    plugins = Path(QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath))
    plugin = plugins / "platforms" / "libqxcb.so"
    missing = missing_libraries(plugin) if plugin.is_file() else []
    if missing:
        packages = " ".join(dict.fromkeys(debian_package(m) for m in missing))
        return (
            f"Qt cannot open a window: its X11 (xcb) platform needs {', '.join(missing)}, not "
            f"installed; install them (Debian/Ubuntu: sudo apt-get install {packages}), or run "
            "headless with QT_QPA_PLATFORM=offscreen (and --screenshot FILE)"
        )
    if not env.get("DISPLAY"):
        return (
            "Qt cannot open a window: no X display (DISPLAY is not set); start the app in a "
            "desktop session (ssh -X), or run headless with QT_QPA_PLATFORM=offscreen (and "
            "--screenshot FILE)"
        )
    return None


@dataclass
class Config:
    checkpoint: str = ""  # model file to load: .pth checkpoint, .onnx or OpenVINO IR (.xml)
    model: str | None = None  # registry model name, for the original's published weights
    backend: Literal[tuple(BACKEND_CHOICES)] = "auto"  # runtime for a checkpoint (auto: fastest)
    trust_checkpoint: bool = False  # unpickle --checkpoint in full: trusted files only
    source: str = ""  # image, folder of images or video to open
    save_dir: str = ""  # folder for overlays/video, masks and grades.csv
    rules: str = ""  # grading rules YAML/JSON (utils/line/rules.py; empty: the defaults)
    screenshot: str = ""  # run --source once, save the window here, quit


@dataclass
class FrameReport:
    """What the app shows for a frame besides the pictures (computed in the worker)."""

    grades: FrameGrades  # the frame's fruit (with track ids on video), decisions, grades so far
    class_pixels: dict[str, int]  # defect class -> pixels in the whole image
    image_pixels: int
    fruit_pixels: int  # sum over the graded fruit


class Annotator:
    """Pipeline `annotate` hook: grade each fruit (following it across frames on video), draw
    the grades, count class pixels."""

    def __init__(
        self, class_names: list[str], rules: GradingRules | None = None, track: bool = False
    ) -> None:
        self.class_names = class_names
        self.grader = Grader(rules or GradingRules(), class_names, track=track)

    def __call__(self, image: np.ndarray, mask: np.ndarray, overlay: np.ndarray | None):
        grades = self.grader(image, mask, overlay)
        k = len(self.class_names)
        counts = np.bincount(mask.ravel(), minlength=k)[:k]  # (K,)
        pixels = {self.class_names[c]: int(counts[c]) for c in range(1, k)}
        fruit = sum(g.pixels for g in grades.fruit)
        return FrameReport(grades, pixels, int(mask.size), fruit)


class ResultSaver:
    """Sink for the save folder: overlays + masks of photos, or one result video; grades CSV
    (video: one row per fruit with its final grade, and grades_per_frame.csv)."""

    def __init__(
        self, folder: Path, video: bool, fps: float, class_names: list[str], grader: Grader
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.video = VideoWriterSink(folder / "result.mp4", fps=fps) if video else None
        self.fruit_csv = FruitCSVSink(folder / "grades.csv", grader, class_names) if video else None
        name = "grades_per_frame.csv" if video else "grades.csv"
        self.csv = GradeCSVSink(folder / name, class_names)

    def __call__(self, result: FrameResult) -> None:
        if self.video is not None:
            self.video(result)
        else:
            save_result(self.folder, result)
        report = result.extra
        self.csv.write(result.name, report.grades.fruit if report else [])
        if self.fruit_csv is not None and report:
            self.fruit_csv.write(report.grades.decided)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
        if self.fruit_csv is not None:
            self.fruit_csv.close()
        self.csv.close()


def save_result(folder: Path, result: FrameResult) -> None:
    """<name>_overlay.png and <name>_mask.png (class ids as a VOC palette colour PNG)."""
    drawn = result.overlay if result.overlay is not None else result.image
    save_rgb(folder / f"{result.name}_overlay.png", drawn)
    save_rgb(folder / f"{result.name}_mask.png", index_to_colour(result.mask))


class PipelineWorker(QtCore.QObject):
    """Runs a VideoPipeline in its threads and reports to the GUI thread through signals."""

    frame_ready = QtCore.Signal()  # a new result can be taken with take_latest()
    finished = QtCore.Signal(object, bool)  # (PipelineStats, stopped by the user)
    failed = QtCore.Signal(str)

    def __init__(self, pipeline: VideoPipeline) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.pipeline.sinks.insert(0, self._deliver)
        self._lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._watcher = threading.Thread(target=self._watch, name="gui-watch", daemon=True)

    def start(self) -> None:
        self.pipeline.start()
        self._watcher.start()

    def stop(self) -> None:
        self.pipeline.stop()

    def take_latest(self) -> FrameResult | None:
        with self._lock:
            result, self._latest = self._latest, None
        return result

    def _deliver(self, result: FrameResult) -> None:
        # Pipeline write thread: keep the newest result only, signal when there was none.
        with self._lock:
            pending = self._latest is not None
            self._latest = result
        if not pending:
            self.frame_ready.emit()

    def _watch(self) -> None:
        self.pipeline.join()
        if self.pipeline.error is not None:
            self.failed.emit(str(self.pipeline.error))
        else:
            self.finished.emit(self.pipeline.stats, self.pipeline.stopped)


def to_pixmap(image: np.ndarray) -> QtGui.QPixmap:
    """(H, W, 3) uint8 RGB -> QPixmap (copied, so the array may change afterwards)."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    qimage = QtGui.QImage(image.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
    return QtGui.QPixmap.fromImage(qimage.copy())


class ImagePanel(QtWidgets.QLabel):
    """A titled picture that keeps its aspect ratio when the window is resized."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title
        self._pixmap: QtGui.QPixmap | None = None
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(240, 180)
        self.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Ignored
        )
        self.setStyleSheet("background: #202124; color: #bbb; border: 1px solid #444;")
        self.setText(title)

    def set_image(self, image: np.ndarray | None) -> None:
        self._pixmap = None if image is None else to_pixmap(image)
        self._rescale()

    def image_size(self) -> tuple[int, int] | None:
        return None if self._pixmap is None else (self._pixmap.height(), self._pixmap.width())

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None:
            self.setText(self.title)
            return
        self.setPixmap(
            self._pixmap.scaled(
                self.size(),
                QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                QtCore.Qt.TransformationMode.SmoothTransformation,
            )
        )


class MainWindow(QtWidgets.QMainWindow):
    """The app: toolbar, original | result, and a side panel with legend, areas, grades, FPS."""

    def __init__(self, backend: str = "torch", deploy_cache: str = "logs/deploy_cache") -> None:
        super().__init__()
        self.setWindowTitle("FastSegFormer - navel orange defects")
        self.backend = check_backend_name(backend)  # runtime for checkpoints (utils.deploy)
        self.deploy_cache = deploy_cache
        self.predictor: Any = None
        self.model_path: Path | None = None
        self.source_kind: str | None = None  # "image", "folder", "video", "camera"
        self.source_path: str | int | None = None
        self.save_dir: Path | None = None
        self.rules = GradingRules()
        self.rules_problems: list[str] = []  # why the rules do not fit the model (Start is off)
        self.worker: PipelineWorker | None = None
        self.annotator: Annotator | None = None
        self.last_result: FrameResult | None = None
        self.last_stats: PipelineStats | None = None
        self.frames_shown = 0
        self._build_ui()
        self._set_class_names(list(CLASS_NAMES))
        self._update_buttons()

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        bar = self.addToolBar("main")
        bar.setMovable(False)
        self.act_model = bar.addAction("Open model…", self._ask_model)
        self.backend_box = QtWidgets.QComboBox()
        self.backend_box.addItems(list(BACKEND_CHOICES))
        self.backend_box.setCurrentText(self.backend)
        self.backend_box.setToolTip(
            "runtime for checkpoints, used when a model is opened: auto = the fastest on this "
            "CPU that keeps accuracy; ov-* OpenVINO, ort-* ONNX Runtime, *-int8 quantised"
        )
        self.backend_box.currentTextChanged.connect(self._set_backend)
        bar.addWidget(self.backend_box)
        bar.addSeparator()
        self.act_image = bar.addAction("Image…", lambda: self._ask_source("image"))
        self.act_folder = bar.addAction("Folder…", lambda: self._ask_source("folder"))
        self.act_video = bar.addAction("Video…", lambda: self._ask_source("video"))
        self.act_camera = bar.addAction("Camera", lambda: self.open_source("camera", 0))
        self.camera_index = QtWidgets.QSpinBox()
        self.camera_index.setRange(0, 9)
        self.camera_index.setToolTip("camera device index")
        bar.addWidget(self.camera_index)
        bar.addSeparator()
        self.act_start = bar.addAction("Start", self.start)
        self.act_stop = bar.addAction("Stop", self.stop)
        bar.addSeparator()
        self.act_save = bar.addAction("Save results…", self._ask_save_dir)
        self.act_rules = bar.addAction("Rules…", self._ask_rules)
        self.act_rules.setToolTip("grading rules file (YAML/JSON), as --rules")

        self.original = ImagePanel("original")
        self.result = ImagePanel("result")
        pictures = QtWidgets.QHBoxLayout()
        pictures.addWidget(self._titled("Original", self.original))
        pictures.addWidget(self._titled("Segmentation and grades", self.result))

        side = QtWidgets.QVBoxLayout()
        self.legend = QtWidgets.QGridLayout()
        legend_box = QtWidgets.QGroupBox("Classes")
        legend_box.setLayout(self.legend)
        side.addWidget(legend_box)
        self.areas = QtWidgets.QTableWidget(0, 3)
        self.areas.setHorizontalHeaderLabels(["defect", "% image", "% fruit"])
        side.addWidget(self._titled("Defect area", self.areas))
        self.grades = QtWidgets.QTableWidget(0, 3)
        self.grades.setHorizontalHeaderLabels(["fruit", "defect %", "grade"])
        side.addWidget(self._titled("Grade per fruit", self.grades), stretch=1)
        for table in (self.areas, self.grades):
            table.verticalHeader().setVisible(False)
            table.verticalHeader().setDefaultSectionSize(22)
            table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Stretch)
            table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.areas.setFixedHeight(22 * 4 + 8)  # header + three defect classes
        self.decided_label = QtWidgets.QLabel("")
        self.decided_label.setWordWrap(True)
        side.addWidget(self.decided_label)
        self.fps_label = QtWidgets.QLabel("FPS -")
        self.fps_label.setStyleSheet("font-size: 15px; font-weight: bold;")
        side.addWidget(self.fps_label)
        self.model_label = QtWidgets.QLabel("no model")
        self.model_label.setWordWrap(True)
        side.addWidget(self.model_label)
        side_widget = QtWidgets.QWidget()
        side_widget.setLayout(side)
        side_widget.setFixedWidth(330)

        central = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(central)
        layout.addLayout(pictures, stretch=1)
        layout.addWidget(side_widget)
        self.setCentralWidget(central)
        self.statusBar().showMessage(
            "Open a model (checkpoint .pth, .onnx or OpenVINO .xml), then a source."
        )
        self._fit_screen()

    def _fit_screen(self) -> None:
        """Start at WINDOW_SIZE, or smaller to stay within the screen's free area with room for
        the window frame: a 1280x800 screen with a taskbar shows the whole window."""
        screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
        free = screen.availableGeometry()
        want_w, want_h = WINDOW_SIZE
        w = max(self.minimumSizeHint().width(), min(want_w, free.width() - FRAME_ROOM[0]))
        h = max(self.minimumSizeHint().height(), min(want_h, free.height() - FRAME_ROOM[1]))
        self.resize(w, h)

    @staticmethod
    def _titled(title: str, widget: QtWidgets.QWidget) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox(title)
        inner = QtWidgets.QVBoxLayout(box)
        inner.setContentsMargins(4, 4, 4, 4)
        inner.addWidget(widget)
        return box

    def _set_class_names(self, names: list[str]) -> None:
        while self.legend.count():
            item = self.legend.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for k, name in enumerate(names):
            r, g, b = (int(v) for v in VOC_PALETTE[k])
            swatch = QtWidgets.QLabel()
            swatch.setFixedSize(18, 18)
            swatch.setStyleSheet(f"background: rgb({r},{g},{b}); border: 1px solid #888;")
            row, col = divmod(k, 2)  # two classes per row
            self.legend.addWidget(swatch, row, 2 * col)
            self.legend.addWidget(QtWidgets.QLabel(f"{k} {name}"), row, 2 * col + 1)
        self.class_names = names

    def _update_buttons(self) -> None:
        running = self.running
        ready = (
            self.predictor is not None and self.source_kind is not None and not self.rules_problems
        )
        self.act_start.setEnabled(ready and not running)
        self.act_stop.setEnabled(running)
        for act in (
            self.act_model,
            self.act_image,
            self.act_folder,
            self.act_video,
            self.act_camera,
            self.act_rules,
        ):
            act.setEnabled(not running)

    # ------------------------------------------------------------------ dialogs
    def _ask_model(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open model", "", "Models (*.pth *.pt *.onnx *.xml);;All files (*)"
        )
        if path:
            self.load_model(path)

    def _ask_source(self, kind: str) -> None:
        if kind == "folder":
            path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open image folder")
        else:
            suffixes = IMAGE_SUFFIXES if kind == "image" else VIDEO_SUFFIXES
            pattern = " ".join(f"*{s}" for s in suffixes)
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, f"Open {kind}", "", f"{kind.title()} ({pattern});;All files (*)"
            )
        if path:
            self.open_source(kind, path)

    def _ask_rules(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Grading rules", "", "Grading rules (*.yaml *.yml *.json);;All files (*)"
        )
        if path:
            self.load_rules(path)

    def _ask_save_dir(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Save results to folder")
        if path:
            self.set_save_dir(path)

    def _error(self, text: str) -> None:
        self.statusBar().showMessage(text)
        if QtWidgets.QApplication.platformName() != "offscreen":
            QtWidgets.QMessageBox.critical(self, "FastSegFormer", text)

    # ------------------------------------------------------------------ actions
    def _set_backend(self, name: str) -> None:
        self.backend = check_backend_name(name)
        self.statusBar().showMessage(f"backend {name}: used for the next checkpoint opened")

    def load_model(
        self, path: str | Path, model_name: str | None = None, trust: bool = False
    ) -> bool:
        """Load a project checkpoint (run on the chosen backend), the original's weights (asks
        the model name), an ONNX file or an OpenVINO IR (utils.inference.open_model).

        Weights files are read without running code from them unless `trust` (the
        --trust-checkpoint flag, for the --checkpoint file only); a refused file is reported.
        """
        path = Path(path)
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        self.statusBar().showMessage(f"opening {path.name} (backend {self.backend}) ...")
        try:
            predictor = open_model(
                path,
                backend=self.backend,
                model_name=model_name,
                trust=trust,
                cache_dir=self.deploy_cache or None,
            )
        except NeedsFullInstall as e:
            QtWidgets.QApplication.restoreOverrideCursor()
            self._error(str(e))
            return False
        except ValueError as e:
            QtWidgets.QApplication.restoreOverrideCursor()
            if model_name is None and "not a project checkpoint" in str(e) and self.isVisible():
                question = f"{path.name} holds plain weights: which model?"
                name, ok = QtWidgets.QInputDialog.getItem(
                    self, "Model", question, model_names(), 0, False
                )
                return self.load_model(path, name, trust) if ok else False
            self._error(f"cannot load model: {e}")
            return False
        except Exception as e:  # noqa: BLE001 - any loading failure is shown, not raised
            QtWidgets.QApplication.restoreOverrideCursor()
            self._error(f"cannot load model {path}: {type(e).__name__}: {e}")
            return False
        QtWidgets.QApplication.restoreOverrideCursor()
        self.set_predictor(predictor, path.name)
        return True

    def set_predictor(self, predictor: Any, label: str = "model") -> None:
        """Use an already built predictor (anything with the Predictor contract)."""
        self.predictor = predictor
        self._set_class_names(list(predictor.class_names))
        describe = getattr(predictor, "describe", None)
        self.model_label.setText(f"{label}\n{describe() if describe else ''}")
        self.statusBar().showMessage(f"model {label} loaded")
        self.set_rules(self.rules)
        self._update_buttons()

    def load_rules(self, path: str | Path) -> bool:
        """Grade with the rules of `path` (the loader of utils.line.rules, as --rules); a file
        with problems is reported, one line each, and the rules in use stay."""
        try:
            rules = load_rules(path)
        except RulesError as err:
            self._error("\n".join(err.problems))
            return False
        if not self.set_rules(rules):
            return False
        self.statusBar().showMessage(f"grading rules: {rules.source}")
        return True

    def set_rules(self, rules: GradingRules) -> bool:
        """Use `rules`; with a model loaded they must limit only its classes, else Start stays
        off and the status says why (open fitting rules with Rules…)."""
        self.rules = rules
        names = self.predictor.class_names if self.predictor is not None else None
        self.rules_problems = rules.problems(names)
        if self.rules_problems:
            self._error("\n".join(self.rules_problems))
        self._update_buttons()
        return not self.rules_problems

    def open_source(self, kind: str, path: str | int | Path) -> None:
        """Select a source ("image", "folder", "video", "camera") and preview it."""
        if kind not in ("image", "folder", "video", "camera"):
            raise ValueError(f"unknown source kind {kind!r}; expected image, folder, video, camera")
        if kind == "camera":
            path = int(self.camera_index.value()) if path in (None, 0) else path
        self.source_kind, self.source_path = kind, path if kind == "camera" else str(path)
        preview = None
        try:
            if kind == "image":
                preview = read_image(path)
            elif kind == "video":
                src = VideoFileSource(path)
                first = src.read()
                src.close()
                preview = None if first is None else first[1]
            elif kind == "folder":
                images = sorted(
                    p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                )
                preview = read_image(images[0]) if images else None
        except (OSError, ValueError) as e:
            self._error(str(e))
            self.source_kind = None
        self.original.set_image(preview)
        self.result.set_image(None)
        self.statusBar().showMessage(f"{kind}: {path}")
        self._update_buttons()
        if self.source_kind is not None and self.predictor is not None and kind == "image":
            self.start()  # a single photo: no reason to wait for Start

    def set_save_dir(self, path: str | Path) -> None:
        """Save the displayed result now, and every later run's results, into `path`."""
        self.save_dir = Path(path)
        if self.last_result is not None:
            save_result(self.save_dir, self.last_result)
        self.statusBar().showMessage(f"results are saved in {self.save_dir}")

    def _make_source(self):
        kind, path = self.source_kind, self.source_path
        if kind == "image":
            return FrameListSource([(Path(path).stem, read_image(path))])
        if kind == "folder":
            return image_folder_source(path)
        if kind == "video":
            return VideoFileSource(path)
        return CameraSource(path)

    def start(self) -> None:
        """Run the selected source through the model in the worker threads."""
        if self.running or self.predictor is None or self.source_kind is None:
            return
        try:
            source = self._make_source()
        except (OSError, ValueError) as e:
            self._error(str(e))
            return
        is_video = self.source_kind in ("video", "camera")
        annotator = Annotator(self.class_names, self.rules, track=is_video)
        sinks = []
        if self.save_dir is not None:
            fps = getattr(source, "fps", None) or 25.0
            saver = ResultSaver(self.save_dir, is_video, fps, self.class_names, annotator.grader)
            sinks.append(saver)
        pipeline = VideoPipeline(
            self.predictor,
            source,
            sinks,
            batch_size=1 if source.live else 4,
            draw=default_draw,
            annotate=annotator,
        )
        self.annotator = annotator
        self.worker = PipelineWorker(pipeline)
        self.worker.frame_ready.connect(self._show_latest)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.frames_shown = 0
        self.worker.start()
        self.statusBar().showMessage(f"running {self.source_kind}: {self.source_path}")
        self._update_buttons()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.pipeline.running

    # ------------------------------------------------------------------ slots (GUI thread)
    @QtCore.Slot()
    def _show_latest(self) -> None:
        if self.worker is None:
            return
        result = self.worker.take_latest()
        if result is None:
            return
        self.last_result = result
        self.frames_shown += 1
        self.original.set_image(result.image)
        self.result.set_image(result.overlay if result.overlay is not None else result.image)
        if isinstance(result.extra, FrameReport):
            self._show_report(result.extra)
        stats = self.worker.pipeline.stats
        if stats.frames_out > 1:
            self.fps_label.setText(
                f"FPS {stats.fps:.1f}   model {stats.stage_ms['infer']:.0f} ms/frame"
            )

    def _show_report(self, report: FrameReport) -> None:
        self.areas.setRowCount(len(report.class_pixels))
        for row, (name, pixels) in enumerate(report.class_pixels.items()):
            of_fruit = 100 * pixels / report.fruit_pixels if report.fruit_pixels else 0.0
            cells = (name, f"{100 * pixels / report.image_pixels:.2f}", f"{of_fruit:.2f}")
            for col, text in enumerate(cells):
                self.areas.setItem(row, col, QtWidgets.QTableWidgetItem(text))
        fruit_now = report.grades.fruit
        self.grades.setRowCount(len(fruit_now))
        for row, g in enumerate(fruit_now):
            # tracked fruit (video): its id on the belt and its grade so far over the frames
            name, total = g.grade, g.total
            if g.track in report.grades.running:
                name, total = report.grades.running[g.track]
            fruit = (f"#{g.track}" if g.track else f"{g.fruit}") + (
                " (partial)" if g.partial else ""
            )
            grade = QtWidgets.QTableWidgetItem(name)
            grade.setForeground(QtGui.QColor(GRADE_QCOLOURS.get(name, "#888")))
            self.grades.setItem(row, 0, QtWidgets.QTableWidgetItem(fruit))
            self.grades.setItem(row, 1, QtWidgets.QTableWidgetItem(f"{100 * total:.2f}"))
            self.grades.setItem(row, 2, grade)
        self._show_decided()

    def _show_decided(self) -> None:
        """The tally of the fruit decided so far (video and camera: one decision per fruit)."""
        grader = self.annotator.grader if self.annotator is not None else None
        if grader is None or grader.tracker is None:
            self.decided_label.setText("")
            return
        decisions = list(grader.decisions)  # appended to by the pipeline's threads
        counts = Counter(d.grade for d in decisions)
        tally = ", ".join(f"{counts[g]} {g}" for g in grader.rules.names if counts[g])
        self.decided_label.setText(
            f"fruit decided: {len(grader.decisions)}" + (f" ({tally})" if tally else "")
        )

    @QtCore.Slot(object, bool)
    def _on_finished(self, stats: PipelineStats, stopped: bool) -> None:
        self._show_latest()  # the last frame may still be waiting
        if self.annotator is not None:
            self.annotator.grader.finish()  # the fruit still in view at the end
            self._show_decided()
        self.last_stats = stats
        if stats.frames_out:
            self.fps_label.setText(
                f"FPS {stats.fps:.1f}   model {stats.stage_ms['infer']:.0f} ms/frame"
            )
        state = "stopped" if stopped else "finished"
        self.statusBar().showMessage(f"{state}: {stats.frames_out} frames, {stats.fps:.1f} FPS")
        self.worker = None
        self._update_buttons()

    @QtCore.Slot(str)
    def _on_failed(self, message: str) -> None:
        self.worker = None
        self._update_buttons()
        self._error(message)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Process events until the current run has ended and been reported (tests, scripts)."""
        deadline = time.perf_counter() + timeout
        app = QtWidgets.QApplication.instance()
        while (self.worker is not None) and time.perf_counter() < deadline:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.005)
        app.processEvents()
        return self.worker is None

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.worker is not None:
            self.worker.stop()
            self.worker.pipeline.join(5.0)
        super().closeEvent(event)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--grades" or a.startswith("--grades=") for a in argv):
        print(
            "gui.py: error: --grades is now --rules, the flag of python -m utils.line.grading "
            "too: pass --rules FILE",
            file=sys.stderr,
        )
        return 2
    args = parse_config(Config, argv, description=__doc__)
    try:
        rules = load_rules(args.rules)
    except RulesError as err:
        print("\n".join(f"gui.py: error: {line}" for line in err.problems), file=sys.stderr)
        return 2

    app = QtWidgets.QApplication.instance()
    if app is None:
        problem = qt_platform_problem()  # Qt would abort (status 134) creating the application
        if problem is not None:
            print(f"gui.py: error: {problem}", file=sys.stderr)
            return 2
        app = QtWidgets.QApplication(sys.argv[:1])
    window = MainWindow(backend=args.backend)
    window.set_rules(rules)
    window.show()
    if args.checkpoint and not window.load_model(
        args.checkpoint, args.model, trust=args.trust_checkpoint
    ):
        return 1
    if window.rules_problems:  # the rules limit classes the model lacks
        print("\n".join(f"gui.py: error: {p}" for p in window.rules_problems), file=sys.stderr)
        return 2
    if args.save_dir:
        window.set_save_dir(args.save_dir)
    if args.source:
        source = Path(args.source)
        kind = (
            "folder"
            if source.is_dir()
            else "video"
            if source.suffix.lower() in VIDEO_SUFFIXES
            else "image"
        )
        window.open_source(kind, source)
        if kind != "image":
            window.start()
    if args.screenshot:
        window.wait_idle(300.0)
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(args.screenshot))
        print(f"saved {args.screenshot}: {window.statusBar().currentMessage()}")
        window.close()
        return 0
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
