"""Synthetic conveyor video: determinism, ground truth, motion and the command line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from utils.line.conveyor import ConveyorScene, main, write_video


def test_same_seed_same_video_other_seed_differs():
    a, b, c = ConveyorScene(seed=5), ConveyorScene(seed=5), ConveyorScene(seed=6)
    fa, fb, fc = a.render(7), b.render(7), c.render(7)
    assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.label, fb.label)
    assert not np.array_equal(fa.image, fc.image)
    assert fa.image.shape == (360, 640, 3) and fa.image.dtype == np.uint8
    assert fa.label.shape == fa.instances.shape == (360, 640)


def test_ground_truth_is_consistent_and_covers_all_defects():
    scene = ConveyorScene(seconds=2.0, seed=0)
    seen = set()
    for i in range(0, scene.num_frames, 5):
        frame = scene.render(i)
        assert not (frame.label[frame.instances == 0]).any()  # defects only on fruit
        seen |= set(np.unique(frame.label).tolist())
        # Defect pixels look darker/paler than clean peel: they are actually drawn.
        for cls in set(np.unique(frame.label).tolist()) - {0}:
            defect = frame.image[frame.label == cls].astype(float)
            healthy = frame.image[(frame.label == 0) & (frame.instances > 0)].astype(float)
            saturation = lambda px: (px.max(1) - px.min(1)).mean()  # noqa: E731
            assert saturation(defect) < saturation(healthy)
    assert seen == {0, 1, 2, 3}
    assert any(not f.sprite.defects for f in scene.fruits)  # some clean fruit


def test_fruit_roll_left_to_right_at_belt_speed():
    scene = ConveyorScene(seed=2, speed=9.0)
    f0, f3 = scene.render(0), scene.render(3)
    ids = set(np.unique(f0.instances)) & set(np.unique(f3.instances)) - {0}
    moved = []
    for k in ids:
        x0 = np.argwhere(f0.instances == k)[:, 1]
        x3 = np.argwhere(f3.instances == k)[:, 1]
        if x0.min() > 0 and x3.max() < 639:  # fully visible in both
            moved.append(x3.mean() - x0.mean())
    assert moved and all(m == pytest.approx(27.0, abs=1.5) for m in moved)


def test_write_video_and_command_line(tmp_path):
    out = write_video(tmp_path / "a.mp4", seconds=0.5, fps=20, seed=1, size=(120, 160))
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(20)
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (120, 160, 3)

    main(
        [
            "--out",
            str(tmp_path / "line.mp4"),
            "--seconds",
            "0.2",
            "--fps",
            "30",
            "--height",
            "96",
            "--width",
            "128",
            "--masks-dir",
            str(tmp_path / "masks"),
        ]
    )
    cap = cv2.VideoCapture(str(tmp_path / "line.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    assert len(list((tmp_path / "masks").glob("*.png"))) == 6
    with pytest.raises(ValueError, match="at least 64x64"):
        ConveyorScene(height=32, width=32)


def test_voc_export_loads_as_a_segmentation_data_set(tmp_path):
    from utils.data.dataset import VOCSegmentation
    from utils.line.conveyor import write_voc

    root = write_voc(tmp_path / "belt", seconds=0.5, fps=20, seed=3, size=(96, 160), every=1)
    splits = {
        s: (root / "VOC2007/ImageSets/Segmentation" / f"{s}.txt").read_text().split()
        for s in ("train", "val", "test")
    }
    assert [len(v) for v in splits.values()] == [6, 2, 2]
    assert not set(splits["train"]) & set(splits["test"])
    data = VOCSegmentation(root, "train", input_size=64)
    image, label = data[0]
    assert tuple(image.shape) == (3, 64, 64) and tuple(label.shape) == (64, 64)
    scene = ConveyorScene(height=96, width=160, fps=20, seconds=0.5, seed=3)
    truth = set(np.unique(scene.render(0).label).tolist())
    assert set(np.unique(label.numpy()).tolist()) <= truth


def _lane_neighbours(scene: ConveyorScene):
    """(gap, r1 + r2) of each pair of neighbouring fruit in a lane (centre distance, radii)."""
    by_lane: dict[float, list] = {}
    for f in scene.fruits:
        by_lane.setdefault(int(f.lane_y // (scene.height / scene.lanes)), []).append(f)
    for fruit in by_lane.values():
        for a, b in zip(fruit, fruit[1:], strict=False):  # listed right to left
            ra, rb = (a.sprite.rgb.shape[0] - 4) / 2, (b.sprite.rgb.shape[0] - 4) / 2
            yield a.x0 - b.x0, ra + rb


def test_touching_fruit_touch_or_overlap_and_default_fruit_never_do():
    pairs = list(_lane_neighbours(ConveyorScene(seed=4, touching=1.0, seconds=2.0)))
    assert pairs and all(0.87 * radii <= gap <= radii for gap, radii in pairs)
    assert all(gap > radii for gap, radii in _lane_neighbours(ConveyorScene(seed=4, seconds=2.0)))
    half = list(_lane_neighbours(ConveyorScene(seed=4, touching=0.5, seconds=4.0)))
    touching = sum(gap <= radii for gap, radii in half)
    assert 0.25 * len(half) < touching < 0.75 * len(half)
    # Where fruit overlap, the one drawn on top owns the pixels in both maps.
    frame = ConveyorScene(seed=4, touching=1.0).render(10)
    assert np.array_equal(frame.label > 0, (frame.label > 0) & (frame.instances > 0))
    with pytest.raises(ValueError, match="touching"):
        ConveyorScene(touching=1.5)


def test_ground_truth_beside_the_video_reads_back_exactly(tmp_path):
    from utils.line.conveyor import ground_truth_dir, read_ground_truth

    out = write_video(
        tmp_path / "t.mp4", seconds=0.2, fps=30, seed=9, size=(96, 160), ground_truth=True,
        touching=0.5,
    )  # fmt: skip
    gt = ground_truth_dir(out)
    assert gt == tmp_path / "t_gt" and (gt / "scene.json").is_file()
    scene = ConveyorScene(height=96, width=160, fps=30, seconds=0.2, seed=9, touching=0.5)
    for i in range(6):
        label, fruit = read_ground_truth(gt, i)
        frame = scene.render(i)
        assert np.array_equal(label, frame.label) and np.array_equal(fruit, frame.instances)
    with pytest.raises(FileNotFoundError, match="--ground-truth"):
        read_ground_truth(gt, 6)
    assert not list(tmp_path.glob(".*"))  # the video went through a temporary file


def test_voc_export_adds_frames_to_an_existing_data_set(tmp_path):
    from utils.line.conveyor import write_voc

    root = tmp_path / "mix"
    splits = root / "VOC2007" / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("synth_00000\nsynth_00001\n")
    write_voc(root, seconds=0.5, fps=20, seed=3, size=(96, 160), every=2, scenes=2)
    write_voc(root, seconds=0.5, fps=20, seed=3, size=(96, 160), every=2)  # again: no duplicates
    train = (splits / "train.txt").read_text().split()
    assert train[:2] == ["synth_00000", "synth_00001"] and len(train) == len(set(train))
    assert {n.split("_")[1] for n in train[2:]} == {"3", "4"}  # seeds 3 and 4
    names = sorted(p.stem for p in (root / "VOC2007" / "JPEGImages").glob("belt_*.jpg"))
    assert len(names) == 10
    objects = sorted(p.stem for p in (root / "VOC2007" / "SegmentationObject").glob("*.png"))
    assert objects == names
