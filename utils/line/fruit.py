"""Fruit on the belt: one region per orange in a frame, one id per orange across frames.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) segments
defects (1 sunburn, 2 ulcer, 3 wind scarring); a sorting line has to turn those pixels into a
decision per fruit. Two steps come before any grading, and this module does both:

1. **Regions.** The fruit pixels are the saturated peel colour united with the predicted defects
   (`utils.inference.visualize.fruit_mask`), or a mask / instance map the caller has. Oranges
   that touch or overlap on the belt form one connected blob; `split_touching` separates them
   from the distance transform, as a watershed of the distance map does: the distance of each
   fruit pixel to the belt peaks once in the middle of each orange (the peak's height is its
   radius), so blobs whose outline is not convex are searched for several such peaks, and
   each pixel goes to the orange it lies deepest inside (least distance to the centre minus
   the radius). For round fruit that boundary is the line through the two contact points, the
   neck where the distance map's basins meet. (OpenCV's `cv2.watershed` floods by the colour
   differences between neighbouring pixels, not by the height of a map; on a distance map it
   cut oranges in the wrong places, hence the explicit assignment.)
2. **Tracking.** An orange is seen in many consecutive frames as the belt carries it.
   `FruitTracker` gives it one id for all of them: every track's last box is moved by the belt's
   motion (the median displacement of the fruit matched in the previous frame, per frame
   elapsed) and matched to the new boxes by overlap (IoU, best pairs first). A box that matches
   nothing starts a track; a track unseen for more than `max_missed` frames has left the belt.

Plain geometry: nothing here knows about grades (see utils/line/grading.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from utils.inference.visualize import fruit_mask

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


# ---------------------------------------------------------------------------- regions
def fruit_regions(
    image: np.ndarray,
    mask: np.ndarray,
    fruit: np.ndarray | None = None,
    split: bool = True,
) -> np.ndarray:
    """(H, W) int32 fruit ids (0 = no fruit) of one frame.

    fruit: None (find the fruit by colour, `fruit_mask`), a boolean fruit mask, or an integer
    instance map (0 = no fruit, k = fruit k, as the conveyor renders it; used as it is).
    Defect pixels always count as fruit when the regions come from a colour or boolean mask.
    split: separate touching fruit (`split_touching`); else each connected blob is one fruit.
    """
    if fruit is None:
        fruit = fruit_mask(image, mask)
    fruit = np.asarray(fruit)
    if fruit.shape != mask.shape:
        raise ValueError(f"fruit map {fruit.shape} and class mask {mask.shape} sizes differ")
    if fruit.dtype != bool:
        return fruit.astype(np.int32)
    binary = fruit | (mask != 0)
    if split:
        return split_touching(binary)
    _, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return labels


def split_touching(
    binary: np.ndarray,
    min_solidity: float = 0.93,
    min_peak: float = 0.45,
    max_neck: float = 0.85,
) -> np.ndarray:
    """(H, W) bool fruit mask -> (H, W) int32 fruit ids, touching or overlapping fruit split.

    Each connected blob whose area is below `min_solidity` of its convex hull's (one orange is
    convex: about 0.98; two touching ones about 0.88) is searched for fruit centres: local maxima
    of the distance transform at least `min_peak` of the blob's largest distance (an orange's
    radius), taken largest first, each at least the larger radius away from those kept and
    separated from them by a neck (the distance along the segment between them drops below
    `max_neck` of the smaller radius). In blobs with two or more centres each pixel goes to the
    centre it lies deepest inside (least |pixel - centre| - radius); other blobs stay one fruit.
    """
    binary_u8 = np.ascontiguousarray(binary, dtype=np.uint8)
    n, labels = cv2.connectedComponents(binary_u8, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return labels
    contours, _ = cv2.findContours(binary_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    dist: np.ndarray | None = None
    next_id = n
    for contour in contours:
        area = cv2.contourArea(contour)
        hull = cv2.contourArea(cv2.convexHull(contour))
        if hull <= 0 or area >= min_solidity * hull:
            continue  # convex: one fruit
        x, y, w, h = cv2.boundingRect(contour)
        x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), x + w + 1, y + h + 1
        box_labels = labels[y0:y1, x0:x1]
        px, py = contour[0, 0]
        blob_id = labels[py, px]
        blob = box_labels == blob_id
        if dist is None:
            dist = cv2.distanceTransform(binary_u8, cv2.DIST_L2, 5)
        d = np.where(blob, dist[y0:y1, x0:x1], 0.0).astype(np.float32)
        centres = _fruit_centres(d, min_peak, max_neck)
        if len(centres) < 2:
            continue
        # Each pixel of the blob goes to the fruit it lies deepest inside: the least
        # |p - centre| - radius. For round fruit this is the line through the contact points
        # (where the distance map's basins meet), and it cannot leak across the belt.
        rows, cols = np.nonzero(blob)
        ys, xs = rows.astype(np.float32), cols.astype(np.float32)
        best = np.full(ys.shape, np.inf, np.float32)  # (pixels,) least depth so far
        owner = np.zeros(ys.shape, np.int32)  # (pixels,) index of that fruit
        for k, (cy, cx, rad) in enumerate(centres):
            depth = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2) - rad
            closer = depth < best
            best[closer], owner[closer] = depth[closer], k
        parts = np.full(d.shape, -1, np.int32)
        parts[rows, cols] = owner
        for k in range(1, len(centres)):
            box_labels[parts == k] = next_id
            next_id += 1
    return labels


def _fruit_centres(d: np.ndarray, min_peak: float, max_neck: float) -> list[tuple[int, int, float]]:
    """(row, col, radius) of the fruit centres in a distance map of one blob (see above)."""
    top = float(d.max())
    if top <= 1.0:
        return []
    size = max(3, int(0.3 * top) | 1)
    peaks = (d >= cv2.dilate(d, np.ones((size, size), np.uint8))) & (d >= min_peak * top)
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-d[rows, cols], kind="stable")
    kept: list[tuple[int, int, float]] = []
    for i in order:
        r, c, rad = int(rows[i]), int(cols[i]), float(d[rows[i], cols[i]])
        if all(_separate(d, (r, c, rad), k, max_neck) for k in kept):
            kept.append((r, c, rad))
    return kept


def _separate(
    d: np.ndarray, a: tuple[int, int, float], b: tuple[int, int, float], max_neck: float
) -> bool:
    """True when centres a and b are far enough apart and a neck lies between them."""
    gap = float(np.hypot(a[0] - b[0], a[1] - b[1]))
    if gap < max(a[2], b[2]):
        return False
    t = np.linspace(0.0, 1.0, max(3, int(gap)))
    rows = np.round(a[0] + t * (b[0] - a[0])).astype(int)
    cols = np.round(a[1] + t * (b[1] - a[1])).astype(int)
    return float(d[rows, cols].min()) < max_neck * min(a[2], b[2])


def region_boxes(labels: np.ndarray, ids: Sequence[int]) -> dict[int, Box]:
    """Bounding box (x, y, w, h) of each region id in `ids`."""
    boxes = {}
    for i in ids:
        region = labels == i
        cols, rows = np.flatnonzero(region.any(axis=0)), np.flatnonzero(region.any(axis=1))
        boxes[i] = (
            int(cols[0]),
            int(rows[0]),
            int(cols[-1] - cols[0] + 1),
            int(rows[-1] - rows[0] + 1),
        )
    return boxes


# ---------------------------------------------------------------------------- tracking
def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    id: int
    box: Box  # last box seen
    index: int  # frame index it was last seen in
    hits: int = 1


@dataclass
class FruitTracker:
    """One id per fruit across frames: boxes matched to tracks moved along the belt's motion.

    `update(index, boxes)` returns the track id of each box and the ids of the tracks that have
    ended (unseen for more than `max_missed` frames); `finish()` ends every open track (end of
    the video). Frame indices may skip (a live source drops frames): the motion is per frame.
    """

    min_iou: float = 0.3  # a box continues a track when their IoU (track moved) is at least this
    max_missed: int = 2  # frames a track may go unseen before it ends
    motion: tuple[float, float] = (0.0, 0.0)  # belt motion (dx, dy) per frame, learnt as it runs
    _tracks: dict[int, _Track] = field(default_factory=dict, init=False)
    _next_id: int = field(default=1, init=False)

    def predicted(self, track_id: int, index: int, frame: tuple[int, int] | None = None) -> Box:
        """Where track `track_id` should be in frame `index`: its last box moved by the belt.

        frame: (H, W). A side of the box on the frame's edge stays there (a fruit coming into
        view grows from the edge; one leaving shrinks into it), and the box is cut to the frame.
        """
        t = self._tracks[track_id]
        steps = index - t.index
        x, y, w, h = t.box
        dx, dy = self.motion[0] * steps, self.motion[1] * steps
        x0, y0, x1, y1 = x + dx, y + dy, x + w + dx, y + h + dy
        if frame is not None:
            fh, fw = frame
            x0, y0 = (0 if x == 0 else max(x0, 0)), (0 if y == 0 else max(y0, 0))
            x1, y1 = (fw if x + w >= fw else min(x1, fw)), (fh if y + h >= fh else min(y1, fh))
        return (round(x0), round(y0), max(1, round(x1 - x0)), max(1, round(y1 - y0)))

    def update(
        self, index: int, boxes: Sequence[Box], frame: tuple[int, int] | None = None
    ) -> tuple[list[int], list[int]]:
        """Match frame `index`'s boxes to the tracks; returns (track id per box, ended ids).

        frame: the (H, W) of the frame, so that fruit cut by its edges are followed too.
        """
        open_ids = list(self._tracks)
        pairs = []
        for j, box in enumerate(boxes):
            for tid in open_ids:
                iou = box_iou(self.predicted(tid, index, frame), box)
                if iou >= self.min_iou:
                    pairs.append((iou, tid, j))
        pairs.sort(key=lambda p: -p[0])
        assigned: list[int] = [0] * len(boxes)
        used: set[int] = set()
        moves = []
        for _, tid, j in pairs:
            if assigned[j] or tid in used:
                continue
            assigned[j] = tid
            used.add(tid)
            t = self._tracks[tid]
            steps = max(1, index - t.index)
            (ox, oy, ow, oh), (nx, ny, nw, nh) = t.box, boxes[j]
            if frame is None or not (_on_edge(t.box, frame) or _on_edge(boxes[j], frame)):
                # centre displacement per frame (a box cut by the frame edge moves less)
                moves.append(
                    ((nx + nw / 2 - ox - ow / 2) / steps, (ny + nh / 2 - oy - oh / 2) / steps)
                )
            t.box, t.index, t.hits = tuple(boxes[j]), index, t.hits + 1
        if moves:
            self.motion = (
                float(np.median([m[0] for m in moves])),
                float(np.median([m[1] for m in moves])),
            )
        for j, box in enumerate(boxes):
            if not assigned[j]:
                assigned[j] = self._next_id
                self._tracks[self._next_id] = _Track(self._next_id, tuple(box), index)
                self._next_id += 1
        ended = [tid for tid, t in self._tracks.items() if index - t.index > self.max_missed]
        for tid in ended:
            del self._tracks[tid]
        return assigned, ended

    def finish(self) -> list[int]:
        """End every open track (the source has ended); returns their ids."""
        ended = list(self._tracks)
        self._tracks.clear()
        return ended

    @property
    def open_tracks(self) -> list[int]:
        return list(self._tracks)


def _on_edge(box: Box, frame: tuple[int, int]) -> bool:
    x, y, w, h = box
    return x <= 0 or y <= 0 or x + w >= frame[1] or y + h >= frame[0]
