"""Grade labels of neighbouring fruit never overlap: the placement, and the drawing on two
touching fruit."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from utils.line.grading import GRADE_COLOURS, FruitGrade, draw_grades
from utils.line.label_placement import GAP, place_labels


def _apart(a, b) -> bool:  # noqa: ANN001
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax + aw + GAP <= bx or bx + bw + GAP <= ax or ay + ah + GAP <= by or by + bh + GAP <= ay


def _in_image(rects, h: int, w: int) -> bool:  # noqa: ANN001
    return all(x >= 0 and y >= 0 and x + rw <= w and y + rh <= h for x, y, rw, rh in rects)


def test_labels_of_touching_fruit_are_apart_and_beside_their_fruit():
    boxes = [(100, 100, 60, 60), (160, 100, 60, 60), (220, 100, 60, 60)]  # three in a row
    sizes = [(150, 16)] * 3  # each label wider than its fruit
    rects = place_labels(boxes, sizes, (400, 600))
    for a, b in itertools.combinations(rects, 2):
        assert _apart(a, b), (a, b)
    for (bx, by, bw, bh), (rx, ry, rw, rh) in zip(boxes, rects, strict=True):
        assert (rw, rh) == (150, 16)
        assert rx < bx + bw and rx + rw > bx  # over some of its fruit's columns
        assert by - rh - GAP <= ry <= by + bh + GAP  # above, inside the top, or below it
    assert rects[0][1] == 100 - 16 - GAP  # the first takes the place above its fruit


def test_crowded_labels_stack_and_stay_in_the_image():
    boxes = [(10 + 12 * i, 40, 12, 12) for i in range(12)]  # twelve small touching fruit
    rects = place_labels(boxes, [(60, 12)] * 12, (120, 200))  # each label as wide as 5 fruit
    for a, b in itertools.combinations(rects, 2):
        assert _apart(a, b), (a, b)
    assert _in_image(rects, 120, 200)


def test_labels_at_the_image_edge_are_kept_inside():
    rects = place_labels([(0, 0, 30, 30), (170, 90, 30, 30)], [(80, 14)] * 2, (120, 200))
    assert rects[0][:2] == (0, GAP)  # no room above: inside the top of the box
    assert rects[1][0] == 200 - 80  # shifted left to end at the image's right edge


def test_no_room_at_all_falls_back_above_the_box():
    rects = place_labels([(0, 20, 10, 10)] * 3, [(40, 30)] * 3, (40, 40))
    assert _in_image(rects, 40, 40)  # one label fills the image; the others go over it


@pytest.mark.parametrize("tracked", [False, True])
def test_drawn_labels_of_two_touching_fruit_do_not_overlap(tracked):
    image = np.zeros((240, 420, 3), np.uint8)
    left = FruitGrade(1, (120, 110, 70, 70), 3800, {}, 0.001, "premium", False, 1, 12 * tracked)
    right = FruitGrade(2, (190, 110, 70, 70), 3800, {}, 0.2, "reject", True, 2, 13 * tracked)
    draw_grades(image, [left, right])
    outlines = np.zeros(image.shape[:2], np.uint8)
    for g in (left, right):
        x, y, w, h = g.bbox
        cv2.rectangle(outlines, (x - 1, y - 1), (x + w, y + h), 1, 4)
    boxes = []
    for g in (left, right):
        ink = np.all(image == GRADE_COLOURS[g.grade], axis=-1) & (outlines == 0)  # its letters
        ys, xs = np.nonzero(ink)
        assert ys.size > 20, g.grade
        boxes.append((xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    (ax, ay, aw, ah), (bx, by, bw, bh) = boxes
    assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, boxes
    assert aw > 70  # the label is wider than its fruit: placed above both, they would overlap
