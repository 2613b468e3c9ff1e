"""Letterbox geometry, tensor conversion and the VOC palette."""

from __future__ import annotations

import numpy as np
import pytest

from utils.data.preprocess import (
    VOC_PALETTE,
    letterbox,
    letterbox_mask,
    read_image,
    to_tensor,
    unletterbox,
)


def test_voc_palette_first_classes():
    assert VOC_PALETTE[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert len({tuple(c) for c in VOC_PALETTE}) == 256


def test_letterbox_wide_image_is_centred_on_grey():
    image = np.full((100, 200, 3), 7, dtype=np.uint8)
    out, box = letterbox(image, (224, 224))
    assert out.shape == (224, 224, 3)
    assert (box.new_h, box.new_w, box.top, box.left) == (112, 224, 56, 0)
    assert (out[:56] == 128).all() and (out[56 + 112 :] == 128).all()
    assert (out[56 : 56 + 112] == 7).all()


def test_letterbox_mask_matches_image_placement():
    mask = np.zeros((100, 200), dtype=np.uint8)
    mask[:, 100:] = 3
    out = letterbox_mask(mask, (224, 224))
    assert out.shape == (224, 224)
    assert (out[:56] == 0).all()
    assert (out[60:160, :100] == 0).all() and (out[60:160, 124:] == 3).all()


def test_unletterbox_inverts_letterbox():
    image = np.zeros((60, 120, 3), dtype=np.uint8)
    image[:, 60:] = 255
    padded, box = letterbox(image, (64, 64))
    back = unletterbox(to_tensor(padded), box)  # (3, 64, 64) -> (3, 60, 120)
    assert back.shape == (3, 60, 120) and back.dtype == np.float32
    assert back[0, :, :50].max() < 0.05 and back[0, :, 70:].min() > 0.95
    single = unletterbox(to_tensor(padded)[:1], box)  # one map keeps its axis
    assert single.shape == (1, 60, 120)


def test_to_tensor_scaling_and_normalisation():
    image = np.full((2, 3, 3), 255, dtype=np.uint8)
    x = to_tensor(image)
    assert x.shape == (3, 2, 3) and x.dtype == np.float32 and np.allclose(x, 1.0)
    y = to_tensor(image, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert np.allclose(y, 2.0)


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image(bad)


def test_read_image_returns_rgb(tmp_path):
    import cv2

    bgr = np.zeros((4, 4, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # red in BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = read_image(tmp_path / "red.png")
    assert rgb[0, 0].tolist() == [255, 0, 0]
