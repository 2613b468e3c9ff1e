"""Synthetic sorting-line video: navel oranges rolling across a conveyor belt.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) was
demonstrated on a 30-frame video of oranges on a sorting line. That video is not public, so
this module renders a stand-in: a dark belt with moving slats and oranges in two lanes rolling
from left to right, some clean and some with the paper's three defect classes (1 sunburn,
2 ulcer, 3 wind scarring). Every frame comes with its ground truth (class mask and fruit
instance ids), so the demo, the video pipeline and the grading can be tested without a camera.

Usage:
    python -m utils.line.conveyor --out line.mp4                       # 1 s at 30 FPS = 30 frames
    python -m utils.line.conveyor --out line.mp4 --seconds 10 --fps 30 --seed 3
    python -m utils.line.conveyor --out line.mp4 --masks-dir line_masks  # also the class masks
    python -m utils.line.conveyor --out line.mp4 --touching 0.3      # some fruit touch / overlap
    python -m utils.line.conveyor --out test.mp4 --ground-truth      # + test_gt/ for --evaluate
    python -m utils.line.conveyor --voc data/conveyor --seconds 8     # frames as a VOC data set
    python -m utils.line.conveyor --voc data/oranges --scenes 4 --every 3   # added to a data set

Fruit never touch by default; `touching` is the share of fruit placed against the fruit ahead
in their lane, touching it or overlapping it by up to 12 % of the two radii (the fruit behind
is drawn on top, and owns those pixels in the class mask and the fruit ids).

Rendering is deliberately simple and fast (a few milliseconds per 640x360 frame): each
orange is drawn once as a sprite (shaded peel, pore texture, defects) and then only rotated
and pasted, so the video can be generated inside the tests.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from utils.cli import parse_config
from utils.data.labels import index_to_colour, read_mask, save_index_mask
from utils.fileio import write_bytes

SUNBURN, ULCER, WIND_SCARRING = 1, 2, 3
BELT_RGB = (58, 60, 64)  # dark, unsaturated: the fruit stands out by colour


@dataclass
class Sprite:
    """One orange drawn once: colour, coverage and labels on a square canvas."""

    rgb: np.ndarray  # (S, S, 3) uint8
    alpha: np.ndarray  # (S, S) float32 in [0, 1]
    label: np.ndarray  # (S, S) uint8 class ids (0 = healthy peel / background)
    defects: tuple[int, ...]  # classes drawn on this fruit


@dataclass
class ConveyorFrame:
    """A rendered frame and its ground truth."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 class mask
    instances: np.ndarray  # (H, W) int32: 0 belt, k > 0 the k-th fruit of the video


def _peel_colour(rng: np.random.Generator) -> np.ndarray:
    """Navel-orange peel from yellow-orange to deep orange (RGB)."""
    hue = rng.uniform(0.0, 1.0)
    deep, light = np.array([236, 112, 22]), np.array([232, 168, 40])
    return (deep * (1 - hue) + light * hue).astype(np.float32)


def _draw_sunburn(rgb, label, inside, r, c, rng) -> None:
    """A large pale, yellow-brown patch with a soft edge."""
    cy, cx = rng.uniform(-0.4, 0.4, 2) * r + c
    ry, rx = rng.uniform(0.25, 0.45, 2) * r
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    weight = np.clip(1.3 - d, 0, 1)[..., None] * inside[..., None]
    rgb[:] = rgb * (1 - 0.8 * weight) + np.array([206, 178, 104]) * 0.8 * weight
    label[(d < 0.9) & (inside > 0.5)] = SUNBURN


def _draw_ulcer(rgb, label, inside, r, c, rng) -> None:
    """A cluster of small dark-brown lesions with a darker rim (canker-like)."""
    cy, cx = rng.uniform(-0.45, 0.45, 2) * r + c
    for _ in range(int(rng.integers(3, 8))):
        y, x = cy + rng.normal(0, 0.15 * r), cx + rng.normal(0, 0.15 * r)
        rad = max(2, int(rng.uniform(0.04, 0.09) * r))
        if inside[int(np.clip(y, 0, inside.shape[0] - 1)), int(np.clip(x, 0, inside.shape[1] - 1))]:
            cv2.circle(rgb, (int(x), int(y)), rad + 1, (70, 45, 20), -1, cv2.LINE_AA)
            cv2.circle(rgb, (int(x), int(y)), rad, (112, 80, 44), -1, cv2.LINE_AA)
            cv2.circle(label, (int(x), int(y)), rad + 1, ULCER, -1)


def _draw_wind_scarring(rgb, label, inside, r, c, rng) -> None:
    """Irregular grey-tan streaks, the rub marks of branches on the peel."""
    y, x = rng.uniform(-0.5, 0.5, 2) * r + c
    angle = rng.uniform(0, 2 * math.pi)
    points = []
    for _ in range(int(rng.integers(6, 12))):
        points.append((int(x), int(y)))
        angle += rng.normal(0, 0.6)
        step = rng.uniform(0.06, 0.12) * r
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
    thickness = max(2, int(0.05 * r))
    pts = np.array(points, dtype=np.int32)
    cv2.polylines(rgb, [pts], False, (168, 132, 96), thickness, cv2.LINE_AA)
    cv2.polylines(label, [pts], False, WIND_SCARRING, thickness + 1)


_DEFECT_DRAWERS = {SUNBURN: _draw_sunburn, ULCER: _draw_ulcer, WIND_SCARRING: _draw_wind_scarring}


def render_orange(radius: int, rng: np.random.Generator, defects: tuple[int, ...]) -> Sprite:
    """Draw one orange of `radius` pixels with the given defect classes on a square sprite."""
    size = 2 * radius + 4
    c = np.array([size / 2, size / 2])
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    squash = rng.uniform(0.9, 1.0)  # navel oranges are not perfect spheres
    dy, dx = (yy - c[0]) / (radius * squash), (xx - c[1]) / radius
    d2 = dy**2 + dx**2
    alpha = np.clip((1.0 - np.sqrt(d2)) * radius + 0.5, 0, 1).astype(np.float32)  # antialiased
    inside = (d2 < 1.0).astype(np.float32)

    # Lambert shading from the top left, a soft highlight, and pore texture on the peel.
    nz = np.sqrt(np.clip(1.0 - d2, 0, 1))
    light = np.array([-0.45, -0.45, 0.77])  # (y, x, z)
    shade = np.clip(dy * light[0] + dx * light[1] + nz * light[2], 0, 1)
    highlight = np.clip(shade - 0.9, 0, 1) * 3.0
    pores = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.0)
    base = _peel_colour(rng)
    rgb = base * (0.45 + 0.6 * shade)[..., None] + 60 * highlight[..., None]
    rgb += 10 * pores[..., None]
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    label = np.zeros((size, size), dtype=np.uint8)
    for cls in defects:
        _DEFECT_DRAWERS[cls](rgb, label, inside, radius, c, rng)
    label[inside < 0.5] = 0
    return Sprite(rgb=rgb, alpha=alpha, label=label, defects=tuple(defects))


@dataclass
class _Fruit:
    lane_y: float  # centre row of the fruit (px)
    x0: float  # centre column at frame 0 (px), negative = not yet on the belt
    sprite: Sprite
    spin: float  # degrees per pixel travelled (rolling)
    fruit_id: int


@dataclass
class ConveyorScene:
    """A deterministic belt scene: `render(i)` draws frame i (same seed -> same video)."""

    height: int = 360
    width: int = 640
    fps: float = 30.0
    seconds: float = 1.0
    seed: int = 0
    speed: float = 9.0  # belt speed in pixels per frame
    lanes: int = 2
    clean_fraction: float = 0.35  # share of fruit without defects
    touching: float = 0.0  # share of fruit that touch or overlap the fruit ahead in their lane
    fruits: list[_Fruit] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.height < 64 or self.width < 64:
            raise ValueError(
                f"conveyor frame must be at least 64x64, got {self.height}x{self.width}"
            )
        if not 0.0 <= self.touching <= 1.0:
            raise ValueError(f"touching must be a share in [0, 1], got {self.touching}")
        rng = np.random.default_rng(self.seed)
        lane_h = self.height / self.lanes
        radius_max = int(0.42 * lane_h)
        travel = self.speed * self.num_frames + self.width  # every x a fruit may start from
        fruit_id, defective = 0, 0
        for lane in range(self.lanes):
            # Start with fruit already on the belt, then line the rest up to the left of it.
            x = rng.uniform(0.1, 0.5) * self.width + radius_max
            ahead: tuple[float, int] | None = None  # (x, radius) of a fruit to touch
            while x > -travel:
                radius = int(rng.uniform(0.8, 1.0) * radius_max)
                if ahead is not None:
                    # Against the fruit ahead: touching, or overlapping by up to 12 % of the
                    # two radii (the later fruit, to the left, is drawn on top).
                    x = ahead[0] - (ahead[1] + radius) * (1.0 - rng.uniform(0.0, 0.12))
                if rng.uniform() < self.clean_fraction:
                    defects: tuple[int, ...] = ()
                else:  # cycle the main defect so every class shows up early in the video
                    defective += 1
                    extra = int(rng.integers(1, 4)) if rng.uniform() < 0.3 else 0
                    defects = tuple(sorted({1 + (defective + lane) % 3, extra} - {0}))
                fruit_id += 1
                self.fruits.append(
                    _Fruit(
                        lane_y=(lane + 0.5) * lane_h + rng.uniform(-0.05, 0.05) * lane_h,
                        x0=x,
                        sprite=render_orange(radius, rng, defects),
                        spin=float(np.degrees(1.0 / radius)) * rng.choice([0.6, 1.0]),
                        fruit_id=fruit_id,
                    )
                )
                ahead = None
                if self.touching > 0 and rng.uniform() < self.touching:
                    ahead = (x, radius)  # the next fruit in this lane touches this one
                x -= 2 * radius_max + rng.uniform(0.15, 1.2) * radius_max  # gap: fruit never touch

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))

    def _belt(self, index: int) -> np.ndarray:
        """Dark belt with transverse slats that move at belt speed, and two rails."""
        frame = np.empty((self.height, self.width, 3), dtype=np.uint8)
        frame[:] = BELT_RGB
        pitch = 48
        offset = int(index * self.speed) % pitch
        frame[:, offset::pitch] = (42, 43, 46)
        frame[:, (offset + 1) % pitch :: pitch] = (42, 43, 46)
        rail = max(2, self.height // 60)
        frame[:rail] = (120, 122, 126)
        frame[-rail:] = (120, 122, 126)
        return frame

    def render(self, index: int) -> ConveyorFrame:
        """Frame `index` (0-based) with its class mask and fruit instance ids."""
        image = self._belt(index)
        label = np.zeros((self.height, self.width), dtype=np.uint8)
        instances = np.zeros((self.height, self.width), dtype=np.int32)
        for fruit in self.fruits:
            sprite = fruit.sprite
            size = sprite.rgb.shape[0]
            cx = fruit.x0 + index * self.speed
            left, top = int(round(cx - size / 2)), int(round(fruit.lane_y - size / 2))
            if left >= self.width or left + size <= 0:
                continue
            # Roll: rotate the sprite by the distance travelled.
            m = cv2.getRotationMatrix2D((size / 2, size / 2), -fruit.spin * (cx - fruit.x0), 1.0)
            rgb = cv2.warpAffine(sprite.rgb, m, (size, size), flags=cv2.INTER_LINEAR)
            alpha = cv2.warpAffine(sprite.alpha, m, (size, size), flags=cv2.INTER_LINEAR)
            lab = cv2.warpAffine(sprite.label, m, (size, size), flags=cv2.INTER_NEAREST)
            # Clip the sprite to the frame.
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + size, self.height), min(left + size, self.width)
            sy, sx = slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)
            a = alpha[sy, sx][..., None]
            region = image[y0:y1, x0:x1].astype(np.float32)
            image[y0:y1, x0:x1] = (region * (1 - a) + rgb[sy, sx] * a).astype(np.uint8)
            on_fruit = alpha[sy, sx] > 0.5
            instances[y0:y1, x0:x1][on_fruit] = fruit.fruit_id
            label[y0:y1, x0:x1][on_fruit] = lab[sy, sx][on_fruit]
        return ConveyorFrame(image=image, label=label, instances=instances)

    def __iter__(self):
        for i in range(self.num_frames):
            yield self.render(i)


GT_CLASS_DIR = "SegmentationClass"  # class ids per frame (VOC palette PNG), as in VOC
GT_FRUIT_DIR = "SegmentationObject"  # fruit ids per frame (16-bit PNG: ids run over the video)


def ground_truth_dir(video: str | Path) -> Path:
    """Where a conveyor video's ground truth lives: the folder `<video stem>_gt` beside it."""
    video = Path(video)
    return video.with_name(f"{video.stem}_gt")


def _temp_beside(path: Path) -> Path:
    """A temporary name in `path`'s folder that keeps its suffix (writers pick the format by it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _write_png(path: Path, image: np.ndarray) -> None:
    """An 8- or 16-bit single-channel PNG, written atomically."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    write_bytes(path, data.tobytes())


def write_ground_truth(folder: Path, index: int, frame: ConveyorFrame) -> None:
    """Frame `index`'s class mask and fruit ids as `folder/{SegmentationClass,Object}/N.png`."""
    save_index_mask(folder / GT_CLASS_DIR / f"{index:05d}.png", frame.label)
    if frame.instances.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError("more than 65535 fruit in one video: render a shorter video")
    _write_png(folder / GT_FRUIT_DIR / f"{index:05d}.png", frame.instances.astype(np.uint16))


def read_ground_truth(folder: str | Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """((H, W) uint8 class ids, (H, W) int32 fruit ids) of frame `index` from `write_video`'s
    ground-truth folder."""
    folder = Path(folder)
    paths = [folder / sub / f"{index:05d}.png" for sub in (GT_CLASS_DIR, GT_FRUIT_DIR)]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"ground truth of frame {index} missing: {path}; render the video with "
                f"`python -m utils.line.conveyor --out VIDEO --ground-truth`"
            )
    label = read_mask(paths[0])
    fruit = cv2.imread(str(paths[1]), cv2.IMREAD_UNCHANGED)
    if fruit is None or fruit.ndim != 2:
        raise ValueError(f"{paths[1]}: expected a single-channel PNG of fruit ids")
    return label, fruit.astype(np.int32)


def write_video(
    out: str | Path,
    seconds: float = 1.0,
    fps: float = 30.0,
    seed: int = 0,
    size: tuple[int, int] = (360, 640),
    masks_dir: str | Path | None = None,
    ground_truth: bool = False,
    touching: float = 0.0,
) -> Path:
    """Render the belt to an MP4 (mp4v) at `out`; optionally the class masks as colour PNGs
    (`masks_dir`) and the ground truth for `python -m utils.line.grading --evaluate`
    (`ground_truth`: class ids, fruit ids and scene.json under `ground_truth_dir(out)`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scene = ConveyorScene(
        height=size[0], width=size[1], fps=fps, seconds=seconds, seed=seed, touching=touching
    )
    tmp = _temp_beside(out)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    if not writer.isOpened():
        raise OSError(f"cannot open {out} for writing: OpenCV has no mp4v encoder here")
    if masks_dir is not None:
        masks_dir = Path(masks_dir)
        masks_dir.mkdir(parents=True, exist_ok=True)
    gt = ground_truth_dir(out) if ground_truth else None
    try:
        for i, frame in enumerate(scene):
            writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
            if masks_dir is not None:
                # Colour PNG in the VOC palette: readable by people and by the data loader.
                colour = cv2.cvtColor(index_to_colour(frame.label), cv2.COLOR_RGB2BGR)
                write_bytes(masks_dir / f"{i:05d}.png", cv2.imencode(".png", colour)[1].tobytes())
            if gt is not None:
                write_ground_truth(gt, i, frame)
        writer.release()
        os.replace(tmp, out)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    if gt is not None:
        info = {
            "video": out.name,
            "frames": scene.num_frames,
            **{k: getattr(scene, k) for k in ("height", "width", "fps", "seed", "speed", "lanes")},
            "touching": scene.touching,
            "fruit": {str(f.fruit_id): [int(c) for c in f.sprite.defects] for f in scene.fruits},
        }
        write_bytes(gt / "scene.json", (json.dumps(info, indent=1) + "\n").encode())
    return out


def _merge_split(path: Path, names: Sequence[str]) -> None:
    """Append `names` to a split file (kept when already listed), atomically."""
    old = path.read_text().split() if path.is_file() else []
    seen = set(old)
    write_bytes(path, "".join(f"{n}\n" for n in old + [n for n in names if n not in seen]).encode())


def write_voc(
    root: str | Path,
    seconds: float = 4.0,
    fps: float = 30.0,
    seed: int = 0,
    size: tuple[int, int] = (360, 640),
    every: int = 2,
    touching: float = 0.0,
    scenes: int = 1,
) -> Path:
    """Every `every`-th frame of `scenes` belts (seeds seed, seed+1, ...) as a VOC data set
    (utils.data.dataset layout) under root/VOC2007, with the fruit ids in SegmentationObject/.

    Frames are split 6:2:2 into train/val/test in contiguous blocks of time, so neighbouring,
    nearly identical frames do not land on both sides of a split. An existing data set (e.g.
    synthetic single-orange photos from utils.data.synthetic) is kept: the frames are added to
    it and to its split files, which mixes the two for training. Returns root.
    """
    root = Path(root)
    voc = root / "VOC2007"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": [], "trainval": []}
    for s in range(seed, seed + max(1, scenes)):
        scene = ConveyorScene(
            height=size[0], width=size[1], fps=fps, seconds=seconds, seed=s, touching=touching
        )
        ids = []
        for i in range(0, scene.num_frames, max(1, every)):
            frame = scene.render(i)
            name = f"belt_{s}_{i:05d}"
            image_bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
            ok, jpg = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise OSError(f"cannot encode {name}.jpg")
            write_bytes(voc / "JPEGImages" / f"{name}.jpg", jpg.tobytes())
            save_index_mask(voc / "SegmentationClass" / f"{name}.png", frame.label)
            # VOC's instance masks: fruit 1..n of this frame (255 would be VOC's border)
            ids_here, fruit = np.unique(frame.instances, return_inverse=True)
            fruit = fruit.reshape(frame.instances.shape)
            if ids_here[0] != 0:
                fruit += 1
            save_index_mask(voc / "SegmentationObject" / f"{name}.png", np.minimum(fruit, 254))
            ids.append(name)
        n_train, n_val = int(0.6 * len(ids)), int(0.2 * len(ids))
        splits["train"] += ids[:n_train]
        splits["val"] += ids[n_train : n_train + n_val]
        splits["test"] += ids[n_train + n_val :]
        splits["trainval"] += ids[: n_train + n_val]
    for split, names in splits.items():
        _merge_split(voc / "ImageSets" / "Segmentation" / f"{split}.txt", names)
    return root


@dataclass
class Config:
    out: str = "line.mp4"  # output video (MP4, mp4v codec)
    seconds: float = 1.0  # length; 1 s at 30 FPS is the seed's 30-frame line video
    fps: float = 30.0  # frames per second
    seed: int = 0  # same seed -> same video
    height: int = 360  # frame height (px)
    width: int = 640  # frame width (px)
    touching: float = 0.0  # share of fruit that touch or overlap the fruit ahead (0..1)
    masks_dir: str | None = None  # also write each frame's class mask (VOC colours) here
    ground_truth: bool = False  # also write class and fruit ids to <out stem>_gt/ (--evaluate)
    voc: str | None = None  # instead of a video: frames as a VOC data set under here (added to one)
    every: int = 2  # --voc: keep every N-th frame
    scenes: int = 1  # --voc: belts rendered with seeds seed, seed+1, ...


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m utils.line.conveyor [--out line.mp4 ...]`: render a conveyor video."""
    cfg = parse_config(Config, argv, description=__doc__)
    if cfg.voc:
        size = (cfg.height, cfg.width)
        root = write_voc(
            cfg.voc, cfg.seconds, cfg.fps, cfg.seed, size, cfg.every, cfg.touching, cfg.scenes
        )
        print(
            f"wrote conveyor frames (seeds {cfg.seed}..{cfg.seed + max(1, cfg.scenes) - 1}) "
            f"into the VOC data set {root / 'VOC2007'}"
        )
        return
    path = write_video(
        cfg.out, cfg.seconds, cfg.fps, cfg.seed, (cfg.height, cfg.width), cfg.masks_dir,
        cfg.ground_truth, cfg.touching,
    )  # fmt: skip
    frames = max(1, int(round(cfg.seconds * cfg.fps)))
    gt = f"; ground truth in {ground_truth_dir(path)}" if cfg.ground_truth else ""
    print(f"wrote {path} ({frames} frames, {cfg.width}x{cfg.height} at {cfg.fps:g} FPS){gt}")


if __name__ == "__main__":
    main()
