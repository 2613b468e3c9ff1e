"""Where the grade labels of the sorting line go: next to their fruit, never over each other.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) was
shown grading oranges on a line, where fruit touch. Each fruit's label ("#12 premium 0.3%") is
wider than a small fruit, so labels placed above each box overlap on neighbouring fruit.
`place_labels` gives every label a rectangle that overlaps no other label: above its box, else
inside its top edge, else below it, else the nearest free row above or below (in each row at
the box's left edge, else beside the labels already there, still over the fruit's columns),
else the nearest free spot of the image. It places the labels one by one (greedily, left to
right), so on an image packed with labels it can run out of free spots where a cleverer
packing would not; only then is a label drawn at the place above its box, over another.

A plain module: imports nothing of the project.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[int, int, int, int]  # x, y, w, h in pixels

GAP = 2  # pixels between a label and its box or another label


def _overlaps(a: Box, b: Box) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw + GAP and bx < ax + aw + GAP and ay < by + bh + GAP and by < ay + ah + GAP


def _inside(r: Box, width: int, height: int) -> bool:
    x, y, w, h = r
    return x >= 0 and y >= 0 and x + w <= width and y + h <= height


def place_labels(
    boxes: Sequence[Box], sizes: Sequence[tuple[int, int]], image_hw: Sequence[int]
) -> list[Box]:
    """A rectangle (x, y, w, h) for each label of size (w, h) of the fruit box at the same
    position, in an image of `image_hw` (height, width): inside the image where it fits, and
    overlapping no other label (with `GAP` pixels between them) while free spots remain.

    Labels are placed left to right by their box, each at the first free candidate: above the
    box, inside its top edge, below it, then rows further up or down (nearest first), in each
    row at the box's left edge or beside a label placed before (nearest first, the label still
    over some of the box's columns), then any free spot of the image (every second pixel, the
    nearest to the box first).
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    placed: list[Box | None] = [None] * len(boxes)
    taken: list[Box] = []

    def fits(r: Box) -> bool:
        return _inside(r, width, height) and not any(_overlaps(r, t) for t in taken)

    for i in sorted(range(len(boxes)), key=lambda i: (boxes[i][0], boxes[i][1])):
        bx, by, bw, bh = boxes[i]
        w, h = sizes[i]
        x = min(max(bx, 0), max(width - w, 0))  # the label's left edge, kept in the image
        step = h + GAP
        rows = [by - h - GAP, by + GAP, by + bh + GAP]
        for k in range(1, height // step + 2):  # rows further away, nearest first
            rows += [by - h - GAP - k * step, by + bh + GAP + k * step]
        # in a row: at the box's left edge, else just beside a label already there, as long as
        # the label still spans some of its fruit's columns
        lefts = [x] + [t[0] + t[2] + GAP for t in taken] + [t[0] - w - GAP for t in taken]
        lefts = [min(max(c, 0), max(width - w, 0)) for c in lefts]
        lefts = sorted({c for c in lefts if c < bx + bw and c + w > bx}, key=lambda c: abs(c - x))
        spots = ((cx, cy, w, h) for cy in rows for cx in lefts or [x])
        rect = next((r for r in spots if fits(r)), None)
        if rect is None:  # every row at the box's x is taken: any free spot, the nearest first
            rows = sorted(range(0, max(height - h, 0) + 1, 2), key=lambda y: abs(y - by))
            cols = sorted(range(0, max(width - w, 0) + 1, 2), key=lambda c: abs(c - x))
            spots = ((cx, cy, w, h) for cy in rows for cx in cols)
            rect = next((r for r in spots if fits(r)), None)
        if rect is None:  # no room left in the image: above the box, clipped into it
            rect = (x, min(max(by - h - GAP, 0), max(height - h, 0)), w, h)
        placed[i] = rect
        taken.append(rect)
    return [r for r in placed if r is not None]
