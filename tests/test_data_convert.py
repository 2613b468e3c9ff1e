"""Bring your own data: labelme folders, COCO files and mask folders -> VOC, and the report.

Every source is small and written by hand here, so the masks it must give are known: for
labelme, PIL's drawing of each shape as labelme paints it (a polygon or rectangle includes
its outline: corners (1, 1)-(5, 4) cover columns 1..5 and rows 1..4; a circle of radius 3 or
5 covers the pixels whose centre is within r + 0.4 of the centre); for COCO, pycocotools'
convention (a polygon's corners lie on pixel edges: corners (1, 1)-(5, 4) cover columns 1..4
and rows 1..3) and RLE runs counted down the columns.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import voc_annotation
from utils.data.coco import convert_coco
from utils.data.convert import ClassTable, ConversionError, VocWriter, decode_photo
from utils.data.labelme import convert_labelme_folder, shape_mask
from utils.data.labels import read_mask, save_index_mask
from utils.data.preprocess import read_image
from utils.data.report import build_report

CLASSES = ["background", "sunburn", "ulcer", "wind_scarring"]
H, W = 12, 16


def _photo(path: Path, h: int = H, w: int = W, value: int = 90, exif_orientation: int = 1) -> Path:
    rng = np.random.default_rng(value)
    image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    kwargs = {}
    if exif_orientation != 1:
        exif = image.getexif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95, **kwargs)
    return path


def _labelme(
    path: Path, shapes: list[dict], image_path: str, embed: bytes | None = None, hw=(H, W)
) -> Path:
    doc = {
        "version": "5.5.0",
        "flags": {},
        "shapes": [
            {"group_id": None, "flags": {}, "description": "", "mask": None, **s} for s in shapes
        ],
        "imagePath": image_path,
        "imageData": base64.b64encode(embed).decode() if embed is not None else None,
        "imageHeight": hw[0],
        "imageWidth": hw[1],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _shape(label: str, points: list, shape_type: str = "polygon") -> dict:
    return {"label": label, "points": points, "shape_type": shape_type}


def _mask(root: Path, stem: str) -> np.ndarray:
    return read_mask(root / "VOC2007" / "SegmentationClass" / f"{stem}.png", 256)


def _run(*args: str) -> int:
    # a few photos each: every one into train (ratio 0 leaves val and test out)
    return voc_annotation.main(["--seed", "0", "--ratios", "1", "0", "0", *args])


# ------------------------------------------------------------------------------ labelme


def test_labelme_shapes_paint_as_labelme_does() -> None:
    hw = (10, 12)
    poly = shape_mask(hw, _shape("a", [[1, 1], [5, 1], [5, 4], [1, 4]]))
    expected = np.zeros(hw, bool)
    expected[1:5, 1:6] = True  # outline included: columns 1..5, rows 1..4
    assert np.array_equal(poly, expected)
    # a rectangle is its two corners in either order
    for corners in ([[2, 3], [6, 8]], [[6, 8], [2, 3]], [[6, 3], [2, 8]]):
        rect = shape_mask(hw, _shape("a", corners, "rectangle"))
        expected = np.zeros(hw, bool)
        expected[3:9, 2:7] = True
        assert np.array_equal(rect, expected), corners
    tri = shape_mask((8, 8), _shape("a", [[0, 0], [4, 0], [0, 4]]))
    yy, xx = np.mgrid[:8, :8]
    assert np.array_equal(tri, xx + yy <= 4)


def test_labelme_mask_shape_is_placed_at_its_first_point() -> None:
    patch = np.zeros((3, 4), np.uint8)
    patch[1:, 1:3] = 1
    buf = io.BytesIO()
    Image.fromarray(patch).save(buf, format="PNG")
    shape = _shape("a", [[5, 2], [8, 4]], "mask")
    shape["mask"] = base64.b64encode(buf.getvalue()).decode()
    got = shape_mask((8, 10), shape)
    expected = np.zeros((8, 10), bool)
    expected[3:5, 6:8] = True  # patch rows 1..2, columns 1..2, offset by (x 5, y 2)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("radius", [3, 5])
def test_labelme_circle_is_centre_and_a_point_on_it(radius: int) -> None:
    hw = (24, 24)
    circle = shape_mask(hw, _shape("a", [[11, 12], [11 + radius, 12]], "circle"))
    yy, xx = np.mgrid[:24, :24]
    assert np.array_equal(circle, np.hypot(xx - 11, yy - 12) <= radius + 0.4)
    # the same circle from a point above the centre
    again = shape_mask(hw, _shape("a", [[11, 12], [11, 12 - radius]], "circle"))
    assert np.array_equal(again, circle)


def test_labelme_folder_converts_with_order_label_map_and_both_photo_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "labelme"
    # a.json: photo beside it; ulcer square, then sunburn rectangle over part of it, then a
    # "navel" (mapped to background) over a corner of that
    _photo(src / "a.jpg")
    _labelme(
        src / "a.json",
        [
            _shape("ulcer", [[1, 1], [6, 1], [6, 6], [1, 6]]),
            _shape("sunburn", [[4, 4], [9, 8]], "rectangle"),
            _shape("navel", [[8, 7], [10, 9]], "rectangle"),
            _shape("wind scar", [[13, 2], [14, 2]], "circle"),
        ],
        "a.jpg",
    )
    # b.json: photo embedded (PNG bytes), its imagePath a Windows path to a missing file
    buf = io.BytesIO()
    Image.open(_photo(tmp_path / "elsewhere" / "b.jpg", value=7)).save(buf, format="PNG")
    _labelme(src / "b.json", [_shape("sunburn", [[0, 0], [3, 2]], "rectangle")],
             "..\\photos\\b.jpg", embed=buf.getvalue())  # fmt: skip
    (tmp_path / "map.json").write_text(json.dumps({"wind scar": "wind_scarring",
                                                   "navel": "background"}))  # fmt: skip
    _photo(src / "unlabelled.jpg")
    out = tmp_path / "out"
    rc = _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES,
              "--label-map", str(tmp_path / "map.json"))  # fmt: skip
    assert rc == 0, capsys.readouterr()
    expected = np.zeros((H, W), np.uint8)
    expected[1:7, 1:7] = 2
    expected[4:9, 4:10] = 1
    expected[7:10, 8:11] = 0
    yy, xx = np.mgrid[:H, :W]
    expected[np.hypot(xx - 13, yy - 2) <= 1.4] = 3
    assert np.array_equal(_mask(out, "a"), expected)
    expected_b = np.zeros((H, W), np.uint8)
    expected_b[0:3, 0:4] = 1
    assert np.array_equal(_mask(out, "b"), expected_b)
    voc = out / "VOC2007"
    # photos: a copied byte for byte; b's embedded PNG written as it is, named after imagePath
    assert (voc / "JPEGImages" / "a.jpg").read_bytes() == (src / "a.jpg").read_bytes()
    assert (voc / "JPEGImages" / "b.png").read_bytes() == buf.getvalue()
    assert not (voc / "JPEGImages" / "unlabelled.jpg").exists()
    with Image.open(voc / "SegmentationClass" / "a.png") as im:
        assert im.mode == "P"
    assert (voc / "class_names.txt").read_text().split() == CLASSES
    splits = voc / "ImageSets" / "Segmentation"
    assert sorted((splits / "train.txt").read_text().split()) == ["a", "b"]
    assert not (splits / "val.txt").exists() and not (splits / "test.txt").exists()
    out_text = capsys.readouterr().out
    assert "unlabelled.jpg: no labelme file" in out_text
    report = json.loads((voc / "dataset_report.json").read_text())
    assert report["photos"] == 2
    assert (voc / "dataset_report.png").stat().st_size > 1000
    # --unlabelled-as-background keeps the photo with an empty mask
    rc = _run("--from-labelme", str(src), "--data", str(tmp_path / "out2"), "--classes",
              *CLASSES, "--label-map", str(tmp_path / "map.json"),
              "--unlabelled-as-background")  # fmt: skip
    assert rc == 0
    assert not _mask(tmp_path / "out2", "unlabelled").any()


def test_unknown_label_stops_naming_label_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "labelme"
    _photo(src / "p1.jpg")
    shapes = [
        _shape("sunburn", [[0, 0], [2, 2]], "rectangle"),
        _shape("navel", [[4, 4], [6, 6]], "rectangle"),
    ]
    _labelme(src / "p1.json", shapes, "p1.jpg")
    out = tmp_path / "out"
    rc = _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES)
    err = capsys.readouterr().err
    assert rc == 2
    assert "'navel'" in err and "p1.json" in err and "--label-map" in err
    assert "Traceback" not in err
    rc = _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES,
              "--unknown-as-background", "--force")  # fmt: skip
    assert rc == 0
    mask = _mask(out, "p1")
    assert mask[0:3, 0:3].min() == 1 and mask[3:, 3:].max() == 0
    assert "'navel' x1" in capsys.readouterr().out


def test_labelme_exif_turned_photo_keeps_its_frame(tmp_path: Path) -> None:
    """labelme shows a photo turned by its EXIF tag; its points and our reader agree."""
    src = tmp_path / "labelme"
    _photo(src / "t.jpg", h=8, w=20, exif_orientation=6)  # stored 20 wide, shown 8 wide
    _labelme(src / "t.json", [_shape("ulcer", [[1, 2], [3, 15]], "rectangle")], "t.jpg",
             hw=(20, 8))  # fmt: skip
    out = tmp_path / "out"
    assert _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES) == 0
    mask = _mask(out, "t")
    assert mask.shape == (20, 8)
    assert read_image(out / "VOC2007" / "JPEGImages" / "t.jpg").shape[:2] == (20, 8)
    assert mask[2:16, 1:4].min() == 2 and mask.astype(bool).sum() == 14 * 3


def test_labelme_bad_shape_and_missing_photo_are_named(tmp_path: Path) -> None:
    src = tmp_path / "labelme"
    _labelme(src / "x.json", [_shape("ulcer", [[1, 2]], "rectangle")], "x.jpg")
    writer = VocWriter(tmp_path / "out")
    table = ClassTable(tuple(CLASSES))
    with pytest.raises(ConversionError, match=r"x\.json: imagePath 'x\.jpg' not found"):
        convert_labelme_folder(src, writer, table)
    _photo(src / "x.jpg")
    with pytest.raises(ConversionError, match=r"x\.json: shapes\[0\].*1 points; expected 2"):
        convert_labelme_folder(src, VocWriter(tmp_path / "out2"), table)


def test_writer_refuses_to_mix_into_an_existing_data_set(tmp_path: Path) -> None:
    src = tmp_path / "labelme"
    _photo(src / "a.jpg")
    _labelme(src / "a.json", [], "a.jpg")
    out = tmp_path / "out"
    assert _run("--from-labelme", str(src), "--data", str(out)) == 0
    assert not _mask(out, "a").any()
    with pytest.raises(ConversionError, match="already holds 1 masks.*--force"):
        VocWriter(out)


# ------------------------------------------------------------------------------ COCO


def _coco(tmp_path: Path, images: list[dict], annotations: list[dict]) -> Path:
    doc = {
        "images": images,
        # ids on purpose neither 0-based nor in class order: names decide the class
        "categories": [
            {"id": 7, "name": "ulcer"},
            {"id": 3, "name": "sunburn"},
            {"id": 11, "name": "wind scar"},
            {"id": 12, "name": "stem"},
        ],
        "annotations": annotations,
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_polygons_rle_order_and_names(tmp_path: Path) -> None:
    from pycocotools import mask as mask_api

    img = tmp_path / "images"
    _photo(img / "sub" / "c1.jpg", h=8, w=10)
    _photo(img / "c2.jpg", h=8, w=10, value=3)
    _photo(img / "c3.jpg", h=8, w=10, value=5)
    crowd = np.zeros((8, 10), np.uint8)
    crowd[5:8, 6:10] = 1
    compressed = mask_api.encode(np.asfortranarray(crowd))
    annotations = [
        # c1: a polygon square in two parts, then an uncompressed RLE over part of it
        {"id": 1, "image_id": 1, "category_id": 7, "iscrowd": 0,
         "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4], [7, 5, 9, 5, 9, 7, 7, 7]]},
        # uncompressed RLE, down the columns of an 8x10 image: 8 + 2 zeros, then 3 ones
        # (column 1, rows 2..4), then the rest zeros
        {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 0,
         "segmentation": {"size": [8, 10], "counts": [10, 3, 67]}},
        # c2: a crowd region, compressed RLE (string counts), mapped through the label map
        {"id": 3, "image_id": 2, "category_id": 11, "iscrowd": 1,
         "segmentation": {"size": [8, 10], "counts": compressed["counts"].decode()}},
        {"id": 4, "image_id": 2, "category_id": 12, "iscrowd": 0,
         "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
    ]  # fmt: skip
    images = [
        {"id": 1, "file_name": "sub/c1.jpg", "height": 8, "width": 10},
        {"id": 2, "file_name": "c2.jpg", "height": 8, "width": 10},
        {"id": 3, "file_name": "c3.jpg", "height": 8, "width": 10},  # no annotation
    ]
    path = _coco(tmp_path, images, annotations)
    (tmp_path / "map.json").write_text(json.dumps({"wind scar": "wind_scarring",
                                                   "stem": "__ignore__"}))  # fmt: skip
    out = tmp_path / "out"
    rc = _run("--from-coco", str(path), "--images", str(img), "--data", str(out),
              "--classes", *CLASSES, "--label-map", str(tmp_path / "map.json"))  # fmt: skip
    assert rc == 0
    expected = np.zeros((8, 10), np.uint8)
    expected[1:4, 1:5] = 2  # corners on pixel edges: columns 1..4, rows 1..3
    expected[5:7, 7:9] = 2
    expected[2:5, 1] = 1  # the RLE, painted after the polygon
    assert np.array_equal(_mask(out, "c1"), expected)
    expected2 = np.where(crowd == 1, 3, 0).astype(np.uint8)
    expected2[0:2, 0:2] = 255
    assert np.array_equal(_mask(out, "c2"), expected2)
    assert not _mask(out, "c3").any()


def test_coco_unknown_category_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    img = tmp_path / "images"
    _photo(img / "c1.jpg", h=8, w=10)
    annotations = [{"id": 1, "image_id": 1, "category_id": 12, "iscrowd": 0,
                    "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}]  # fmt: skip
    path = _coco(tmp_path, [{"id": 1, "file_name": "c1.jpg", "height": 8, "width": 10}],
                 annotations)  # fmt: skip
    rc = _run("--from-coco", str(path), "--images", str(img), "--data", str(tmp_path / "o"),
              "--classes", *CLASSES)  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "'stem'" in err and "annotations.json" in err
    assert "Traceback" not in err


def test_coco_size_mismatch_and_missing_photo(tmp_path: Path) -> None:
    img = tmp_path / "images"
    _photo(img / "c1.jpg", h=8, w=10)
    table = ClassTable(tuple(CLASSES))
    path = _coco(tmp_path, [{"id": 1, "file_name": "c1.jpg", "height": 9, "width": 10}], [])
    with pytest.raises(ConversionError, match=r"c1\.jpg: photo is 10x8.*annotation says 10x9"):
        convert_coco(path, img, VocWriter(tmp_path / "o"), table)
    path = _coco(tmp_path, [{"id": 1, "file_name": "nope.jpg", "height": 8, "width": 10}], [])
    with pytest.raises(ConversionError, match=r"photo 'nope\.jpg'.*not found"):
        convert_coco(path, img, VocWriter(tmp_path / "o2"), table)


# ------------------------------------------------------------------------------ mask folders


def test_binary_masks_convert_only_with_an_explicit_class(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    img, masks = tmp_path / "images", tmp_path / "masks"
    _photo(img / "m1.jpg", h=32, w=32)
    binary = np.zeros((32, 32), np.uint8)
    binary[4:20, 6:24] = 255
    masks.mkdir()
    Image.fromarray(binary).save(masks / "m1.png")
    out = tmp_path / "out"
    rc = _run("--from-masks", str(masks), "--images", str(img), "--data", str(out),
              "--classes", "background", "sunburn", "ulcer")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "m1.png" in err and "binary" in err and "--binary-class" in err
    rc = _run("--from-masks", str(masks), "--images", str(img), "--data", str(out),
              "--classes", "background", "sunburn", "ulcer", "--binary-class", "ulcer")  # fmt: skip
    assert rc == 0
    assert np.array_equal(_mask(out, "m1"), np.where(binary == 255, 2, 0))


def test_binary_class_by_name_in_an_existing_voc_set(tmp_path: Path) -> None:
    voc = tmp_path / "VOC2007"
    _photo(voc / "JPEGImages" / "p.jpg", h=32, w=32)
    binary = np.zeros((32, 32), np.uint8)
    binary[4:20, 6:24] = 255
    (voc / "SegmentationClass").mkdir(parents=True)
    Image.fromarray(binary).save(voc / "SegmentationClass" / "p.png")
    assert _run("--data", str(tmp_path), "--binary-class", "wind_scarring") == 0
    assert np.array_equal(_mask(tmp_path, "p"), np.where(binary == 255, 3, 0))


# ------------------------------------------------------------------------------ photos, report


def test_decode_photo_matches_coco_size_either_way(tmp_path: Path) -> None:
    raw = _photo(tmp_path / "r.jpg", h=8, w=20, exif_orientation=6).read_bytes()
    turned = decode_photo(raw, "r.jpg", (20, 8), orientation="match")
    assert (turned.height, turned.width, turned.suffix, turned.data) == (20, 8, ".jpg", raw)
    stored = decode_photo(raw, "r.jpg", (8, 20), orientation="match")
    assert (stored.height, stored.width, stored.suffix) == (8, 20, ".png")
    assert "EXIF orientation 6" in stored.note
    path = tmp_path / "s.png"
    path.write_bytes(stored.data)
    assert read_image(path).shape[:2] == (8, 20)  # no tag left to turn it


def test_report_counts_and_oddities(tmp_path: Path) -> None:
    voc = tmp_path / "VOC2007"
    for i in range(6):
        _photo(voc / "JPEGImages" / f"p{i}.jpg", value=i if i != 5 else 0)  # p5 = p0's photo
        mask = np.zeros((H, W), np.uint8)
        if i < 3:
            mask[0:4, 0:4] = 1  # 16 px of sunburn in p0, p1, p2
        if i == 4:
            mask[5, 5] = 2  # a 1-pixel ulcer
        save_index_mask(voc / "SegmentationClass" / f"p{i}.png", mask)
    split = voc / "ImageSets" / "Segmentation"
    split.mkdir(parents=True)
    (split / "train.txt").write_text("p0\np1\np2\np4\n")
    (split / "val.txt").write_text("p3\n")
    (split / "test.txt").write_text("p5\n")
    ids = [f"p{i}" for i in range(6)]
    report = build_report(voc, ids, CLASSES, input_side=224)
    assert report["photos_per_split"] == {"train": 4, "val": 1, "test": 1}
    assert report["images_per_class"] == [6, 3, 1, 0]
    assert report["class_pixels"] == [6 * H * W - 49, 48, 1, 0]
    assert abs(sum(report["class_pixel_share"]) - 1) < 1e-12
    assert report["sizes"] == [{"width": W, "height": H, "photos": 6}]
    odd = "\n".join(report["odd"])
    assert "'wind_scarring' appears in no photo" in odd
    assert "'sunburn' appears in no photo of: val, test" in odd
    assert "identical photos p0, p5 (in different splits" in odd
    assert "6 photos smaller than 224" in odd
    assert "1 masks hold defect regions under 16 px: p4" in odd


# ------------------------------------------------------------------------------ bad items, splits
# One policy for every converter: all items are read and checked first; every problem is
# reported together, one line each, and nothing is written, so the rerun needs no --force.


def _written(out: Path) -> list[str]:
    """Every file under OUT/VOC2007 (hidden ones included)."""
    voc = out / "VOC2007"
    files = voc.rglob("*") if voc.is_dir() else []
    return sorted(str(p.relative_to(voc)) for p in files if p.is_file())


def test_labelme_reports_every_bad_item_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "labelme"
    _photo(src / "good.jpg")
    _labelme(src / "good.json", [_shape("ulcer", [[1, 1], [4, 4]], "rectangle")], "good.jpg")
    _labelme(src / "nophoto.json", [], "nophoto.jpg")  # its photo is missing
    _photo(src / "navel.jpg")
    _labelme(src / "navel.json", [_shape("navel", [[1, 1], [4, 4]], "rectangle")], "navel.jpg")
    _photo(src / "shape.jpg")
    _labelme(src / "shape.json", [_shape("ulcer", [[1, 2]], "rectangle")], "shape.jpg")
    (src / "broken.json").write_text('{"shapes": [')
    out = tmp_path / "out"
    assert _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: {src}: 4 of 5 item(s) cannot be converted; nothing was written " \
        "(fix them and run again):"  # fmt: skip
    assert [line.split(": ")[0] for line in err[1:]] == [
        f"  - {src / 'broken.json'}",
        f"  - {src / 'navel.json'}",
        f"  - {src / 'nophoto.json'}",
        f"  - {src / 'shape.json'}",
    ]
    assert "'navel' is not one of the classes" in err[2] and "1 points; expected 2" in err[4]
    assert _written(out) == []
    for bad in ("broken", "navel", "nophoto", "shape"):
        (src / f"{bad}.json").unlink()
    assert _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES) == 0
    assert _mask(out, "good").max() == 2  # the rerun needed no --force


def test_coco_reports_every_bad_item_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    img = tmp_path / "images"
    for name in ("ok", "small", "broken"):
        _photo(img / f"{name}.jpg", h=8, w=10)
    (img / "broken.jpg").write_bytes(b"not a jpeg")
    square = [[0, 0, 2, 0, 2, 2, 0, 2]]
    images = [
        {"id": 1, "file_name": "ok.jpg", "height": 8, "width": 10},
        {"id": 2, "file_name": "small.jpg", "height": 9, "width": 10},  # size disagrees
        {"id": 3, "file_name": "gone.jpg", "height": 8, "width": 10},  # no such photo
        {"id": 4, "file_name": "broken.jpg", "height": 8, "width": 10},  # not decodable
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": square},
        {"id": 2, "image_id": 9, "category_id": 7, "segmentation": square},  # no image 9
        {"id": 3, "image_id": 1, "category_id": 99, "segmentation": square},  # no category 99
    ]
    path = _coco(tmp_path, images, annotations)
    out = tmp_path / "out"
    rc = _run("--from-coco", str(path), "--images", str(img), "--data", str(out),
              "--classes", *CLASSES)  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "5 of 5 item(s) cannot be converted; nothing was written" in err
    for found in ("annotations[1] names image_id 9", "photo 'gone.jpg'", "category_id 99",
                  "small.jpg: photo is 10x8", "broken.jpg: cannot decode the photo"):  # fmt: skip
        assert found in err, found
    assert "Traceback" not in err and _written(out) == []


def test_mask_folder_reports_every_bad_item_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    img, masks = tmp_path / "images", tmp_path / "masks"
    masks.mkdir()
    for name in ("ok", "binary", "wide"):
        _photo(img / f"{name}.jpg")
    ok = np.zeros((H, W), np.uint8)
    ok[2:5, 2:5] = 1
    save_index_mask(masks / "ok.png", ok)
    save_index_mask(masks / "orphan.png", ok)  # no photo: its annotation would be lost
    binary = np.zeros((H, W), np.uint8)
    binary[2:8, 2:8] = 255
    Image.fromarray(binary).save(masks / "binary.png")  # 0/255 without --binary-class
    save_index_mask(masks / "wide.png", np.zeros((H, W + 2), np.uint8))  # not the photo's size
    out = tmp_path / "out"
    rc = _run("--from-masks", str(masks), "--images", str(img), "--data", str(out),
              "--classes", "background", "sunburn")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "3 of 4 item(s) cannot be converted; nothing was written" in err
    assert "orphan.png: no photo orphan.* in" in err and "binary.png" in err and "wide" in err
    assert _written(out) == []


def test_an_interrupted_write_removes_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import utils.data.convert as convert

    src = tmp_path / "labelme"
    for i in range(4):
        _photo(src / f"p{i}.jpg", value=i)
        _labelme(src / f"p{i}.json", [_shape("ulcer", [[1, 1], [4, 4]], "rectangle")], f"p{i}.jpg")
    real, calls = convert.save_index_mask, []

    def interrupted_on_the_third_mask(path, mask):  # noqa: ANN001, ANN202
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM (voc_annotation turns it into one)
        return real(path, mask)

    monkeypatch.setattr(convert, "save_index_mask", interrupted_on_the_third_mask)
    out = tmp_path / "out"
    assert _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES) == 130
    assert "nothing of the conversion" in capsys.readouterr().err
    assert _written(out) == []
    monkeypatch.setattr(convert, "save_index_mask", real)
    assert _run("--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES) == 0
    assert len(list((out / "VOC2007" / "SegmentationClass").glob("*.png"))) == 4


_KILLED_CONVERSION = """
import os, signal, sys
import utils.data.convert as convert
import voc_annotation
real, calls = convert.save_index_mask, []
def save(path, mask):
    calls.append(path)
    if len(calls) == 3:
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return real(path, mask)
convert.save_index_mask = save
sys.exit(voc_annotation.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_killed_conversion_does_not_block_the_rerun(tmp_path: Path, signal_name: str) -> None:
    src = tmp_path / "labelme"
    for i in range(4):
        _photo(src / f"p{i}.jpg", value=i)
        _labelme(src / f"p{i}.json", [_shape("ulcer", [[1, 1], [4, 4]], "rectangle")], f"p{i}.jpg")
    out = tmp_path / "out"
    args = ["--from-labelme", str(src), "--data", str(out), "--classes", *CLASSES,
            "--ratios", "1", "0", "0"]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_CONVERSION, signal_name, *args],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    masks = out / "VOC2007" / "SegmentationClass"
    if signal_name == "SIGTERM":  # turned into an interrupt: the writer cleans up at once
        assert proc.returncode == 130, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("interrupted: nothing of")
        assert _written(out) == []
    else:  # killed outright: two masks and the record of the conversion are left
        assert proc.returncode == -9
        assert len(list(masks.glob("*.png"))) == 2
        assert (out / "VOC2007" / ".conversion_in_progress.json").is_file()
    assert voc_annotation.main(args) == 0  # no --force needed: the leftovers are removed
    assert sorted(p.stem for p in masks.glob("*.png")) == ["p0", "p1", "p2", "p3"]
    assert not (out / "VOC2007" / ".conversion_in_progress.json").exists()


def test_ratios_that_leave_a_split_empty_are_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "labelme"
    for i in range(4):
        _photo(src / f"p{i}.jpg", value=i)
        _labelme(src / f"p{i}.json", [], f"p{i}.jpg")
    out = tmp_path / "out"
    args = ["--from-labelme", str(src), "--data", str(out), "--ratios", "7", "2", "1"]
    assert voc_annotation.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--ratios 7 2 1 on 4 photos gives train 3, val 1, test 0: test would be empty" in err[0]
    assert _written(out) == []  # refused before converting
    # a ratio of 0 leaves a split out: no empty file
    assert voc_annotation.main([*args[:4], "--ratios", "3", "1", "0"]) == 0
    folder = out / "VOC2007" / "ImageSets" / "Segmentation"
    assert sorted(p.name for p in folder.iterdir()) == ["train.txt", "trainval.txt", "val.txt"]
    assert voc_annotation.main(["--data", str(out), "--check-only"]) == 0
    # --force with new ratios replaces the files, and removes the one a 0 now leaves out
    assert voc_annotation.main(["--data", str(out), "--ratios", "2", "1", "1", "--force"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "test.txt", "train.txt", "trainval.txt", "val.txt"
    ]  # fmt: skip
    assert voc_annotation.main(["--data", str(out), "--ratios", "1", "0", "1", "--force"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["test.txt", "train.txt", "trainval.txt"]
    # a plain data set too: refused before its masks are touched or a split file written
    capsys.readouterr()
    assert voc_annotation.main(["--data", str(out), "--ratios", "1", "1", "8", "--force"]) == 2
    assert "gives train 0, val 0, test 4" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["test.txt", "train.txt", "trainval.txt"]
