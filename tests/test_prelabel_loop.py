"""tools/prelabel_loop.py: its pieces on known inputs (the loop itself trains models: it is run,
not tested, and docs/data.md holds its figures)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools.prelabel_loop import (
    Config,
    edit_cost,
    format_summary,
    rank_correlation,
    split_pool,
    summarise,
)
from utils.data.drafts import labelme_document

NAMES = ["background", "sunburn", "ulcer", "wind_scarring"]


def test_split_pool_is_seeded_and_disjoint():
    ids = [f"img{i}" for i in range(30)]
    labelled, pool = split_pool(ids, 5, 20, seed=1)
    assert len(labelled) == 5 and len(pool) == 20 and not set(labelled) & set(pool)
    assert split_pool(ids, 5, 20, seed=1) == (labelled, pool)
    assert split_pool(ids, 5, 20, seed=2) != (labelled, pool)
    with pytest.raises(ValueError, match="--labelled 20 \\+ --pool 20 photos, but"):
        split_pool(ids, 20, 20, seed=1)


def test_edit_cost_counts_pixels_to_change_and_to_draw(tmp_path: Path):
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), np.full((10, 12, 3), 128, np.uint8))
    # the draft: sunburn over columns 0..3 of rows 0..3 (16 px; labelme includes the outline)
    square = {"label": "sunburn", "points": [[0, 0], [3, 0], [3, 3], [0, 3]],
              "shape_type": "polygon", "group_id": None, "flags": {}, "description": "",
              "mask": None}  # fmt: skip
    draft = tmp_path / "a.json"
    draft.write_text(json.dumps(labelme_document([square], "a.png", (10, 12))))
    truth = np.zeros((10, 12), np.uint8)
    truth[0:4, 0:2] = 1  # 8 px agree with the draft; 8 drafted px are background in truth
    truth[8, 0:5] = 2  # 5 px the draft missed
    truth[9, 11] = 255  # ignored: counts for nothing
    assert edit_cost(draft, truth, NAMES) == {"changed": 8 + 5, "from_scratch": 8 + 5}


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_summary_gives_mean_and_sample_sd_over_seeds():
    def record(seed: int, first: float, ranked: float, random: float, changed: int) -> dict:
        edit = {"changed": changed, "from_scratch": 1000}
        return {
            "seed": seed,
            "test": {k: {"mIoU": v} for k, v in
                     (("first", first), ("ranked", ranked), ("random", random))},
            "edit": {"ranked": edit, "random": edit, "pool": edit},
            "uncertainty_vs_changed": 0.5,
            "minutes": 2.0,
        }  # fmt: skip

    s = summarise([record(1, 0.40, 0.50, 0.44, 200), record(2, 0.42, 0.54, 0.46, 400)], Config())
    assert s["test_mIoU_ranked"]["mean"] == pytest.approx(52.0)
    assert s["test_mIoU_ranked"]["sd"] == pytest.approx(np.std([50, 54], ddof=1))
    assert s["ranked_minus_random"]["mean"] == pytest.approx(7.0)
    assert s["changed_share_pool"]["mean"] == pytest.approx(0.3)
    text = format_summary(s)
    assert "| + 16 most uncertain, corrected | 52.00 ± 2.83 |" in text
    assert "| all 64 drafted | 300 ± 141 | 1000 ± 0 | 0.30 ± 0.14 |" in text
