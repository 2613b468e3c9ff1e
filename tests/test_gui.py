"""The desktop app, headless (QT_QPA_PLATFORM=offscreen): load a model, run a photo and a video.

The model is a tiny network registered in `nets.MODELS` for the test and saved as a project
checkpoint, so loading goes through the real `Predictor.from_checkpoint` path in seconds.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

QtWidgets = pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed")

from nets.checkpoint import build_checkpoint, save_checkpoint  # noqa: E402
from utils.data.preprocess import CLASS_NAMES  # noqa: E402
from utils.line.conveyor import ConveyorScene, write_video  # noqa: E402


class ColourNet(nn.Module):
    """1x1 conv: "wind_scarring" where green > 0.5 (the lit side of the fruit), else background."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = 64
        self.fixed_input_size = False
        self.backbone = None
        self.head = nn.Conv2d(3, num_classes, 1)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[3, 1] = 20.0  # class 3 logit = 20 * (G - 0.5)
            self.head.bias[3] = -10.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)  # (B, K, H, W)


@pytest.fixture()
def checkpoint(tmp_path, monkeypatch):
    import nets

    monkeypatch.setitem(nets.MODELS, "gui_colour_net", lambda num_classes=4, **kw: ColourNet())
    model = nets.build_model("gui_colour_net")
    ckpt = build_checkpoint(model, input_size=(64, 64), class_names=list(CLASS_NAMES))
    return save_checkpoint(ckpt, tmp_path / "colour_net.pth")


@pytest.fixture(scope="module")
def app():
    from PySide6 import QtWidgets as W

    return W.QApplication.instance() or W.QApplication([])


def test_photo_and_video_offscreen(app, checkpoint, tmp_path):
    import gui

    window = gui.MainWindow()
    window.show()
    assert not window.act_start.isEnabled()
    assert window.load_model(checkpoint)
    assert "colour_net.pth" in window.model_label.text()
    assert window.legend.count() == 2 * len(CLASS_NAMES)  # swatch + name per class

    # A photo: one conveyor frame.
    frame = ConveyorScene(seed=0).render(0)
    photo = tmp_path / "belt.png"
    cv2.imwrite(str(photo), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    window.open_source("image", photo)  # starts at once
    assert window.wait_idle(15.0)
    assert window.last_result is not None and window.last_result.name == "belt"
    assert window.result.image_size() == frame.image.shape[:2]
    assert window.result.pixmap() is not None and not window.result.pixmap().isNull()
    assert window.areas.rowCount() == len(CLASS_NAMES) - 1
    assert [window.areas.item(r, 0).text() for r in range(3)] == list(CLASS_NAMES[1:])
    mask = window.last_result.mask
    shown = [float(window.areas.item(r, 1).text()) for r in range(3)]
    assert shown == pytest.approx([100 * np.mean(mask == k) for k in (1, 2, 3)], abs=0.006)
    assert shown[2] > 0.0  # the model's output reached the panel
    report = window.last_result.extra
    assert window.grades.rowCount() == len(report.grades.fruit) >= 3
    assert window.decided_label.text() == ""  # a photo: no fruit followed across frames
    grades = {window.grades.item(r, 2).text() for r in range(window.grades.rowCount())}
    assert grades <= {"premium", "standard", "reject"}

    # A short video, saved: result video, grades CSV.
    video = write_video(tmp_path / "line.mp4", seconds=0.3, fps=30, seed=1, size=(120, 200))
    out = tmp_path / "results"
    window.set_save_dir(out)  # saves the displayed photo result at once
    assert (out / "belt_overlay.png").is_file() and (out / "belt_mask.png").is_file()
    window.open_source("video", video)
    assert window.act_start.isEnabled()
    window.start()
    assert window.act_stop.isEnabled()
    assert window.wait_idle(15.0)
    assert window.last_stats is not None and window.last_stats.frames_out == 9
    assert window.frames_shown >= 1 and window.last_result.name.endswith("000008")
    assert window.fps_label.text().startswith("FPS ")
    assert "finished" in window.statusBar().currentMessage()
    cap = cv2.VideoCapture(str(out / "result.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 9
    cap.release()
    with (out / "grades_per_frame.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["image"] for r in rows} == {f"line_{i:06d}" for i in range(9)}
    with (out / "grades.csv").open() as f:  # video: one row per fruit, its final grade
        fruit = list(csv.DictReader(f))
    assert sorted(r["fruit"] for r in fruit) == sorted({r["track"] for r in rows if r["track"]})
    assert window.decided_label.text().startswith(f"fruit decided: {len(fruit)}")
    assert window.grades.item(0, 0).text().startswith("#")  # tracked fruit show their id

    shot = tmp_path / "gui.png"
    assert window.grab().save(str(shot))
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600
    assert image.std() > 10  # not a blank window
    window.close()


def test_bad_model_and_stop_mid_video(app, checkpoint, tmp_path):
    import gui

    window = gui.MainWindow()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert not window.load_model(bad)
    assert "cannot load model" in window.statusBar().currentMessage()
    assert window.predictor is None

    assert window.load_model(checkpoint)
    video = write_video(tmp_path / "long.mp4", seconds=20, fps=30, seed=2, size=(96, 128))
    window.open_source("video", video)
    window.start()
    deadline = time.perf_counter() + 15.0
    while window.frames_shown < 3 and time.perf_counter() < deadline:
        app.processEvents()
    assert window.frames_shown >= 3 and window.running
    window.stop()
    assert window.wait_idle(10.0)
    assert "stopped" in window.statusBar().currentMessage()
    assert 0 < window.last_stats.frames_out < 600
    assert not any(t.name.startswith("pipe-") and t.is_alive() for t in _threads())
    window.close()


def _threads():
    import threading

    return threading.enumerate()


def test_numpy_to_pixmap_keeps_colours(app):
    import gui

    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 200  # red
    pixmap = gui.to_pixmap(image)
    colour = pixmap.toImage().pixelColor(2, 2)
    assert (pixmap.width(), pixmap.height()) == (6, 4)
    assert (colour.red(), colour.green(), colour.blue()) == (200, 0, 0)


# ---------------------------------------------------------------------------- screen, platform
_FIT_SCRIPT = """
import json, sys
from PySide6 import QtWidgets
import gui
app = QtWidgets.QApplication([])
window = gui.MainWindow()
window.show()
app.processEvents()
bar = window.findChild(QtWidgets.QToolBar)
hidden = [a.text() for a in bar.actions()
          if not a.isSeparator() and not bar.widgetForAction(a).isVisible()]
free, frame = app.primaryScreen().availableGeometry(), window.frameGeometry()
window.grab().save(sys.argv[1])
print(json.dumps({"free": free.getRect(), "frame": frame.getRect(), "hidden": hidden,
                  "size": [window.width(), window.height()], "room": gui.FRAME_ROOM}))
"""


def test_the_window_fits_a_1280x800_screen(tmp_path, repo_root):
    """A 1280x800 offscreen screen (Qt's offscreen plugin reads its screens from a JSON file):
    the whole window, frame included, is on it, and no toolbar button is folded away."""
    config = tmp_path / "screen.json"
    config.write_text(
        json.dumps(
            {
                "screens": [
                    {
                        "name": "laptop",
                        "x": 0,
                        "y": 0,
                        "width": 1280,
                        "height": 800,
                        "logicalDpi": 96,
                    }
                ]
            }
        )  # fmt: skip
    )
    shot = tmp_path / "window.png"
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}"}
    env["PYTHONPATH"] = str(repo_root)
    proc = subprocess.run([sys.executable, "-c", _FIT_SCRIPT, str(shot)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    fx, fy, fw, fh = found["frame"]
    ax, ay, aw, ah = found["free"]
    assert (aw, ah) == (1280, 800)
    assert ax <= fx and ay <= fy and fx + fw <= ax + aw and fy + fh <= ay + ah, found
    # with room for a window manager's title bar and borders, larger than offscreen's
    (w, h), (room_w, room_h) = found["size"], found["room"]
    assert w + room_w <= aw and h + room_h <= ah and room_h >= 60
    assert found["hidden"] == []
    assert cv2.imread(str(shot)).std() > 10  # the window was drawn


def test_missing_xcb_libraries_are_one_line_naming_the_packages(monkeypatch):
    import gui

    monkeypatch.setattr(gui, "missing_libraries", lambda path: ["libxcb-cursor.so.0"])
    problem = gui.qt_platform_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"})
    assert "\n" not in problem and "sudo apt-get install libxcb-cursor0" in problem
    assert "QT_QPA_PLATFORM=offscreen" in problem
    assert gui.qt_platform_problem({"DISPLAY": ":0"}) == problem  # xcb is Linux's default
    # other platforms are Qt's business
    for env in ({"QT_QPA_PLATFORM": "offscreen"}, {"WAYLAND_DISPLAY": "wayland-0"},
                {"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}):  # fmt: skip
        assert gui.qt_platform_problem(env) is None, env
    monkeypatch.setattr(gui, "missing_libraries", lambda path: [])
    assert "no X display" in gui.qt_platform_problem({"QT_QPA_PLATFORM": "xcb"})
    assert gui.qt_platform_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}) is None
    assert [gui.debian_package(n) for n in (
        "libxcb-icccm.so.4", "libxkbcommon-x11.so.0", "libX11-xcb.so.1", "libEGL.so.1",
        "libdbus-1.so.3", "libglib-2.0.so.0")] == [
        "libxcb-icccm4", "libxkbcommon-x11-0", "libx11-xcb1", "libegl1", "libdbus-1-3",
        "libglib2.0-0"]  # fmt: skip


def test_the_app_without_a_usable_x11_platform_says_so_in_one_line(repo_root):
    """The real thing, in a process of its own: xcb asked for, no display. Qt would abort
    (status 134) with its own message; the app exits 2 with one line (missing libraries where
    this machine lacks them, else the missing display)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(QT_QPA_PLATFORM="xcb", PYTHONPATH=str(repo_root))
    proc = subprocess.run([sys.executable, "gui.py"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("gui.py: error: Qt cannot open a window: ")
    assert "apt-get install" in lines[0] or "no X display" in lines[0]
