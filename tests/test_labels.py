"""Mask reading and checking (utils/data/labels.py): every supported format, every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.data.labels import (
    MaskError,
    check_sizes,
    class_histogram,
    colour_to_index,
    index_to_colour,
    read_mask,
    save_index_mask,
)
from utils.data.preprocess import VOC_PALETTE


def _index_pattern(h: int = 40, w: int = 48) -> np.ndarray:
    """(h, w) uint8 with classes 0..3 in blocks and a few ignore (255) pixels."""
    mask = np.zeros((h, w), np.uint8)
    mask[5:20, 5:20] = 1
    mask[22:35, 10:30] = 2
    mask[8:30, 32:44] = 3
    mask[0, :] = 255
    return mask


def test_palette_png_round_trip(tmp_path: Path) -> None:
    mask = _index_pattern()
    path = save_index_mask(tmp_path / "m.png", mask)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im.getpalette()[:12]), VOC_PALETTE[:4].reshape(-1))
    assert np.array_equal(read_mask(path, 4), mask)


def test_greyscale_index_png(tmp_path: Path) -> None:
    mask = _index_pattern()
    Image.fromarray(mask, mode="L").save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png", 4), mask)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_png_in_voc_colours(tmp_path: Path, mode: str) -> None:
    mask = _index_pattern()
    mask[mask == 255] = 0
    rgb = index_to_colour(mask)
    if mode == "RGBA":
        rgb = np.dstack([rgb, np.full(mask.shape, 255, np.uint8)])
    Image.fromarray(rgb, mode=mode).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png", 4), mask)


def test_voc_boundary_colour_is_ignore() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (224, 224, 192)  # VOC's "void" colour
    assert colour_to_index(rgb)[0, 0] == 255


def test_every_palette_colour_maps_to_its_index() -> None:
    assert np.array_equal(colour_to_index(VOC_PALETTE[None]), np.arange(256)[None])


def test_index_mask_saved_as_grey_rgb(tmp_path: Path) -> None:
    mask = _index_pattern()
    mask[mask == 255] = 0
    Image.fromarray(np.dstack([mask] * 3), mode="RGB").save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png", 4), mask)


def test_colour_outside_palette_names_file_and_colour(tmp_path: Path) -> None:
    rgb = index_to_colour(np.zeros((20, 20), np.uint8))
    rgb[3:6, 3:6] = (127, 1, 0)  # anti-aliased red
    path = tmp_path / "bad_colour.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(MaskError, match=r"bad_colour\.png.*\(127,1,0\) x9.*expected"):
        read_mask(path, 4)


@pytest.mark.parametrize("as_rgb", [False, True])
def test_binary_mask_is_refused_with_advice(tmp_path: Path, as_rgb: bool) -> None:
    binary = np.zeros((64, 64), np.uint8)
    binary[20:40, 10:30] = 255
    path = tmp_path / "binary.png"
    Image.fromarray(np.dstack([binary] * 3) if as_rgb else binary).save(path)
    with pytest.raises(MaskError, match=r"binary\.png.*0/255 binary mask.*--binary-to-index"):
        read_mask(path, 4)


def test_bilevel_png_is_refused(tmp_path: Path) -> None:
    binary = np.zeros((64, 64), bool)
    binary[10:40, 10:40] = True
    Image.fromarray(binary).convert("1").save(tmp_path / "b.png")
    with pytest.raises(MaskError, match="binary"):
        read_mask(tmp_path / "b.png", 4)


def test_thin_ignore_border_is_not_mistaken_for_binary(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[20:22, 5:60] = 255  # a 2 px VOC-style ignore outline, nothing else
    save_index_mask(tmp_path / "m.png", mask)
    assert np.array_equal(read_mask(tmp_path / "m.png", 4), mask)


def test_binary_mask_allowed_when_255_classes(tmp_path: Path) -> None:
    binary = np.zeros((64, 64), np.uint8)
    binary[10:40, 10:40] = 255
    Image.fromarray(binary).save(tmp_path / "b.png")
    assert read_mask(tmp_path / "b.png", 256).max() == 255


def test_colour_mask_converted_to_grey_is_refused(tmp_path: Path) -> None:
    mask = _index_pattern()
    mask[mask == 255] = 0
    grey = np.asarray(Image.fromarray(index_to_colour(mask)).convert("L"))  # 0/38/75/113
    Image.fromarray(grey).save(tmp_path / "g.png")
    with pytest.raises(MaskError, match=r"g\.png.*grey levels of VOC palette colours"):
        read_mask(tmp_path / "g.png", 4)


def test_class_histogram_counts_values_outside_the_classes_last() -> None:
    mask = np.array([[0, 1, 3, 4], [7, 200, 255, 2]], np.uint8)
    assert class_histogram(mask, 4).tolist() == [1, 1, 1, 1, 4]


def test_not_an_image_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(MaskError, match=r"broken\.png.*cannot read"):
        read_mask(path, 4)


def test_missing_mask_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_mask(tmp_path / "nothere.png")


def test_size_mismatch_names_both_files() -> None:
    with pytest.raises(MaskError, match=r"a\.png: mask is 30x20.*b\.jpg is 40x20"):
        check_sizes((20, 40, 3), (20, 30), "b.jpg", "a.png")


# The six real masks: three palette PNGs, two RGBA and one RGB drawn in VOC colours.
REAL_CLASSES = {
    "img279": {0, 1, 2},
    "img418": {0, 2},
    "img585": {0, 2, 3},
    "img663": {0, 1},
    "img705": {0, 3},
    "img826": {0, 2, 3},
}


@pytest.mark.parametrize("name", sorted(REAL_CLASSES))
def test_real_masks_load(real_samples: Path, name: str) -> None:
    path = real_samples / "SegmentationClass" / f"{name}.png"
    mask = read_mask(path, 4)
    assert mask.shape == (512, 512) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == REAL_CLASSES[name]
    # Defects are small: background is more than 90 % of each photo.
    assert class_histogram(mask, 4)[0] > 0.9 * mask.size
