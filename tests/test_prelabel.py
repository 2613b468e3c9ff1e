"""Pre-annotation: drafts (utils/data/drafts.py) and their round trip through voc_annotation.py's
labelme and COCO converters, the uncertainty ranking (utils/inference/prelabel.py), and
predict.py --mode prelabel end to end from a checkpoint and from an exported ONNX file.

The scene every round trip is checked on (48 x 64, made by hand so its regions are known): a
sunburn ring (a region with a hole) holding an ulcer disc in its hole, a wind-scarring bar
touching the ring (two classes side by side), an ulcer block in the top-right corner (a region
on the image border), and two things under MIN_AREA: a one-pixel ulcer speck and a two-pixel
hole in the bar. "Aside" pixels are computed here, independently of the code under test: the
connected areas of any class (8-connected; background 4-connected) under MIN_AREA.
"""

from __future__ import annotations

import base64
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_predict_helpers import make_tiny, register_tiny, write_project_checkpoint

import predict
import voc_annotation
from utils.data import drafts
from utils.data.convert import ClassTable, ConversionError
from utils.data.labelme import is_labelme, paint_shapes
from utils.data.labels import read_mask
from utils.data.preprocess import CLASS_NAMES, read_image
from utils.deploy.onnx_export import export_onnx
from utils.inference.open_model import open_model
from utils.inference.prelabel import photo_uncertainty, pixel_entropy, pixel_margin, prelabel

NAMES = list(CLASS_NAMES)  # background, sunburn, ulcer, wind_scarring
MIN_AREA = 5
H, W = 48, 64


def scene() -> np.ndarray:
    """The (H, W) class mask described in the module docstring."""
    yy, xx = np.mgrid[:H, :W]
    mask = np.zeros((H, W), np.uint8)
    r2 = (yy - 24) ** 2 + (xx - 22) ** 2
    mask[r2 <= 15**2] = 1  # sunburn disc ...
    mask[r2 <= 8**2] = 0  # ... with a hole
    mask[r2 <= 3**2] = 2  # an ulcer inside the hole
    mask[14:34, 37:46] = 3  # wind scarring touching the ring's right side
    mask[22:24, 41] = 0  # a 2-pixel hole in it (under MIN_AREA)
    mask[0:9, 54:64] = 2  # ulcer in the top-right corner: on two image borders
    mask[44, 4] = 2  # a 1-pixel speck (under MIN_AREA)
    return mask


def aside(mask: np.ndarray, min_area: int) -> np.ndarray:
    """(H, W) bool: pixels of connected areas under `min_area` (defects 8-, background
    4-connected), the part of a mask that drafts may leave out."""
    out = np.zeros(mask.shape, bool)
    for value in np.unique(mask):
        conn = 4 if value == 0 else 8
        n, labels, stats, _ = cv2.connectedComponentsWithStats(
            (mask == value).astype(np.uint8), connectivity=conn
        )
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < min_area:
                out |= labels == i
    return out


def agreement(a: np.ndarray, b: np.ndarray, skip: np.ndarray | None = None) -> float:
    keep = np.ones(a.shape, bool) if skip is None else ~skip
    return float((a[keep] == b[keep]).mean())


def test_scene_has_what_the_tests_need():
    mask = scene()
    assert aside(mask, MIN_AREA).sum() == 3  # the speck and the small hole, nothing else
    assert mask[24, 22] == 2 and mask[24, 17] == 0 and mask[24, 9] == 1  # ulcer, hole, ring
    assert mask[20, 36] == 1 and mask[20, 37] == 3  # sunburn and wind scarring touch
    assert mask[0, 63] == 2 and mask[8, 63] == 2  # a region on the top and right borders


# ---------------------------------------------------------------------------- the drafts
def test_regions_are_in_painting_order_with_holes():
    draft = drafts.draft_regions(scene(), 4, MIN_AREA)
    classes = [r.class_id for r in draft.regions]
    assert sorted(classes) == [1, 2, 2, 3]  # ring, ulcer in the hole, corner block, bar
    ring = next(r for r in draft.regions if r.class_id == 1)
    inner = next(r for r in draft.regions if r.class_id == 2 and r.box[0] < 30)
    assert draft.regions.index(ring) < draft.regions.index(inner)  # the island after the ring
    assert len(ring.holes) == 1 and not ring.plain
    bar = next(r for r in draft.regions if r.class_id == 3)
    assert bar.holes == [] and bar.plain  # its 2-pixel hole is under MIN_AREA: filled
    # the draft is the mask, except what is under MIN_AREA
    mask = scene()
    skip = aside(mask, MIN_AREA)
    assert agreement(draft.mask, mask, skip) == 1.0 and draft.dropped == skip.sum()
    assert draft.mask[44, 4] == 0 and (draft.mask[22:24, 41] == 3).all()


def test_labelme_shapes_paint_back_the_draft_exactly():
    draft = drafts.draft_regions(scene(), 4, MIN_AREA)
    shapes = drafts.labelme_shapes(draft, NAMES)
    painted = paint_shapes((H, W), shapes, ClassTable(tuple(NAMES)), Path("scene.json"))
    np.testing.assert_array_equal(painted, draft.mask)
    # holes are the only background shapes, each right after the region it belongs to
    labels = [s["label"] for s in shapes]
    assert labels.count("background") == sum(len(r.holes) for r in draft.regions) == 1
    assert labels[labels.index("background") - 1] == "sunburn"
    # a simplified outline has fewer points and stays within the 99 %
    simple = drafts.labelme_shapes(draft, NAMES, tolerance=0.5)
    assert sum(len(s["points"]) for s in simple) < sum(len(s["points"]) for s in shapes)
    repainted = paint_shapes((H, W), simple, ClassTable(tuple(NAMES)), Path("scene.json"))
    assert agreement(repainted, draft.mask) >= 0.99


@pytest.mark.parametrize("rle", [False, True])
def test_coco_annotations_decode_to_the_draft_with_right_areas_and_boxes(rle):
    from pycocotools import mask as api

    draft = drafts.draft_regions(scene(), 4, MIN_AREA)
    anns = drafts.coco_annotations(draft, image_id=7, first_id=3, rle=rle)
    assert [a["id"] for a in anns] == list(range(3, 3 + len(anns)))
    painted = np.zeros((H, W), np.uint8)
    for ann in anns:
        segm = ann["segmentation"]
        if isinstance(segm, list):
            rles = api.frPyObjects(segm, H, W)
            assert not rle and len(segm) == 1
        else:
            rles = [{"size": segm["size"], "counts": segm["counts"].encode()}]
        region = api.decode(api.merge(rles)).astype(bool)
        assert ann["area"] == int(api.area(api.merge(rles))) == region.sum()
        assert ann["bbox"] == api.toBbox(api.merge(rles)).tolist()
        assert not (painted[region] != 0).any()  # COCO regions do not overlap
        painted[region] = ann["category_id"]
    np.testing.assert_array_equal(painted, draft.mask)
    kinds = {a["category_id"]: type(a["segmentation"]) for a in anns}
    assert kinds[1] is dict  # the ring has a hole: RLE
    assert kinds[3] is (dict if rle else list)  # the bar has none: a polygon unless RLE asked


def test_random_masks_round_trip_exactly():
    """Noisy random masks (blobs of every class, 2 % salt): what the formats paint back is the
    draft, and with min_area 0 the draft is the mask (one pixel may differ where a region
    crosses another's outline diagonally)."""
    from pycocotools import mask as api

    rng = np.random.default_rng(0)
    table = ClassTable(tuple(NAMES))
    worst = 1.0
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(20, 60, 2))
        yy, xx = np.mgrid[:h, :w]
        mask = np.zeros((h, w), np.uint8)
        for _ in range(5):
            cy, cx, r = rng.integers(-5, h + 5), rng.integers(-5, w + 5), rng.integers(2, 15)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 4)
        mask[rng.random((h, w)) < 0.02] = rng.integers(1, 4)
        draft = drafts.draft_regions(mask, 4, 0)
        worst = min(worst, agreement(draft.mask, mask))
        painted = paint_shapes((h, w), drafts.labelme_shapes(draft, NAMES), table, Path("r"))
        np.testing.assert_array_equal(painted, draft.mask)
        coco = np.zeros((h, w), np.uint8)
        for ann in drafts.coco_annotations(draft, 1, 1):
            segm = ann["segmentation"]
            rles = (
                api.frPyObjects(segm, h, w)
                if isinstance(segm, list)
                else [{"size": segm["size"], "counts": segm["counts"].encode()}]
            )
            coco[api.decode(api.merge(rles)).astype(bool)] = ann["category_id"]
        np.testing.assert_array_equal(coco, draft.mask)
    assert worst >= 0.999


def test_bad_masks_are_named():
    with pytest.raises(ValueError, match=r"\(H, W\) integer class mask"):
        drafts.draft_regions(np.zeros((4, 4, 3), np.uint8), 4)
    with pytest.raises(ValueError, match=r"\(H, W\) integer class mask"):
        drafts.draft_regions(np.zeros((4, 4), np.float32), 4)


def test_rle_without_pycocotools_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # as if it were not installed
    draft = drafts.draft_regions(scene(), 4, MIN_AREA)
    plain = drafts.draft_regions(np.where(scene() == 3, 3, 0).astype(np.uint8), 4, MIN_AREA)
    assert isinstance(drafts.coco_annotations(plain, 1, 1)[0]["segmentation"], list)
    with pytest.raises(ConversionError, match=r"pip install 'pycocotools"):
        drafts.coco_annotations(draft, 1, 1)  # the ring needs RLE


# ---------------------------------------------------------------------------- the ranking
class FakePredictor:
    """Probabilities chosen by the test. Photo i (its first pixel's red value is i) predicts
    masks[i] with probability conf[i] for the predicted class and (1 - conf[i]) / 3 for each
    other one, so its per-pixel uncertainty is known and the same everywhere."""

    num_classes = 4
    class_names = NAMES

    def __init__(self, masks: list[np.ndarray], conf: list[float], as_tensor: bool = False):
        self.masks, self.conf, self.as_tensor = masks, conf, as_tensor

    def preprocess(self, image):
        return image.transpose(2, 0, 1).astype(np.float32), None

    def infer(self, batch):
        return batch

    def probabilities(self, logits, box):
        i = int(logits[0, 0, 0])
        mask, c = self.masks[i], self.conf[i]
        probs = np.full((4, *mask.shape), (1 - c) / 3, np.float32)
        np.put_along_axis(probs, mask[None].astype(np.int64), c, axis=0)
        return torch.from_numpy(probs) if self.as_tensor else probs  # either is accepted


def write_photos(folder: Path, n: int, mask: np.ndarray) -> list[Path]:
    """n PNG photos of the scene's size, orange (so the fruit is every pixel), first pixel i."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = np.zeros((*mask.shape, 3), np.uint8)
        image[:] = (230, 120, 20)
        image[0, 0, 0] = i
        paths.append(folder / f"p{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return paths


def expected_entropy(c: float) -> float:
    p = np.array([c, (1 - c) / 3, (1 - c) / 3, (1 - c) / 3])
    return float(-(p * np.log(p)).sum() / np.log(4))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_ranking_orders_photos_by_known_uncertainty(tmp_path, as_tensor):
    conf = [0.9, 0.4, 0.99, 0.6]  # most uncertain: photo 1, then 3, 0, 2
    photos = write_photos(tmp_path / "photos", 4, scene())
    fake = FakePredictor([scene()] * 4, conf, as_tensor)
    result = prelabel(fake, photos, tmp_path / "out", rank=True, log=lambda _: None)
    rows = list(csv.DictReader(result.ranking.open()))
    assert [Path(r["photo"]).name for r in rows] == ["p1.png", "p3.png", "p0.png", "p2.png"]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        c = conf[int(Path(row["photo"]).stem[1:])]
        assert float(row["entropy"]) == pytest.approx(expected_entropy(c), abs=1e-5)
        assert float(row["margin"]) == pytest.approx(1 - (c - (1 - c) / 3), abs=1e-5)
        assert row["status"] == "drafted" and int(row["scored_pixels"]) == H * W
    by_margin = prelabel(
        fake, photos, tmp_path / "m", rank=True, rank_by="margin", log=lambda _: None
    )
    assert [p.photo.name for p in by_margin.ranked("margin")][0] == "p1.png"


def test_uncertainty_measures_and_where_they_are_averaged():
    probs = np.zeros((4, 2, 2), np.float32)
    probs[0] = 1.0  # certain background ...
    probs[:, 0, 0] = [0.25, 0.25, 0.25, 0.25]  # ... but one pixel: all classes equal
    np.testing.assert_allclose(pixel_entropy(probs), [[1, 0], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(pixel_margin(probs), [[1, 0], [0, 0]], atol=1e-6)
    where = np.array([[True, True], [False, False]])
    scores, n = photo_uncertainty(probs, where)  # only the top row counts
    assert n == 2 and scores["entropy"] == pytest.approx(0.5, abs=1e-6)
    scores, n = photo_uncertainty(probs, np.zeros((2, 2), bool))  # no fruit: the whole photo
    assert n == 4 and scores["margin"] == pytest.approx(0.25, abs=1e-6)


# ---------------------------------------------------------------------------- the files
def convert_back(tmp_path: Path, *source: str) -> Path:
    root = tmp_path / "voc"
    argv = [*source, "--data", str(root), "--classes", *NAMES, "--ratios", "1", "0", "0"]
    rc = voc_annotation.main([*argv, "--no-report"])
    assert rc == 0
    return root / "VOC2007" / "SegmentationClass"


def test_labelme_files_follow_labelme_and_round_trip(tmp_path):
    photos = write_photos(tmp_path / "photos", 2, scene())
    out = tmp_path / "drafts"
    prelabel(FakePredictor([scene()] * 2, [0.8, 0.7]), photos, out, min_area=MIN_AREA)
    doc = json.loads((out / "p0.json").read_text())
    # labelme's own loader needs these keys and types (labelme/_label_file.py)
    assert is_labelme(doc)
    assert set(doc) == {"version", "flags", "shapes", "imagePath", "imageData",
                        "imageHeight", "imageWidth"}  # fmt: skip
    assert doc["version"].startswith("5.") and doc["flags"] == {}
    assert doc["imagePath"] == "../photos/p0.png" and doc["imageData"] is None
    assert (out / doc["imagePath"]).resolve() == photos[0].resolve()
    assert (doc["imageHeight"], doc["imageWidth"]) == (H, W)
    for shape in doc["shapes"]:
        assert shape["label"] in NAMES and shape["shape_type"] == "polygon"
        assert shape["group_id"] is None and shape["flags"] == {} and shape["mask"] is None
        assert isinstance(shape["description"], str) and len(shape["points"]) >= 3
        assert all(isinstance(v, float) for p in shape["points"] for v in p)
        assert all(len(p) == 2 for p in shape["points"])
    assert doc["shapes"][0]["label"] != "background"  # background is never a region
    # back through voc_annotation.py: the model's mask, regions under --min-area aside
    masks = convert_back(tmp_path, "--from-labelme", str(out))
    mask = scene()
    for stem in ("p0", "p1"):
        back = read_mask(masks / f"{stem}.png")
        assert agreement(back, mask, aside(mask, MIN_AREA)) == 1.0
        assert agreement(back, mask) >= 0.99


def test_labelme_embeds_the_photo_only_when_asked_and_keeps_existing_files(tmp_path):
    photos = write_photos(tmp_path, 2, scene())
    out = tmp_path / "drafts"
    out.mkdir()
    (out / "p1.json").write_text("corrected by a person")
    result = prelabel(FakePredictor([scene()] * 2, [0.8, 0.7]), photos, out, image_data=True)
    doc = json.loads((out / "p0.json").read_text())
    assert base64.b64decode(doc["imageData"]) == photos[0].read_bytes()
    assert (out / "p1.json").read_text() == "corrected by a person"
    assert [p.status for p in result.photos] == ["drafted", "kept"]


def test_two_photos_of_one_name_are_refused(tmp_path):
    a = write_photos(tmp_path / "a", 1, scene())[0]
    b = write_photos(tmp_path / "b", 1, scene())[0]
    with pytest.raises(ValueError, match=r"share the name 'p0'"):
        prelabel(FakePredictor([scene()], [0.9]), [a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["coco", "coco-rle"])
def test_coco_file_loads_in_pycocotools_and_round_trips(tmp_path, fmt):
    from pycocotools import mask as api
    from pycocotools.coco import COCO

    photos = write_photos(tmp_path / "photos", 3, scene())
    out = tmp_path / "drafts"
    fake = FakePredictor([scene()] * 3, [0.8, 0.7, 0.6])
    prelabel(fake, photos, out, fmt=fmt, min_area=MIN_AREA)
    coco = COCO(str(out / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == NAMES[1:]
    assert coco.getCatIds() == [1, 2, 3]
    assert sorted(im["file_name"] for im in coco.dataset["images"]) == [
        "p0.png",
        "p1.png",
        "p2.png",
    ]
    for ann in coco.dataset["annotations"]:
        rle = coco.annToRLE(ann)
        assert ann["area"] == int(coco.annToMask(ann).sum())
        assert ann["bbox"] == api.toBbox(rle).tolist()
    masks = convert_back(
        tmp_path, "--from-coco", str(out / "annotations.json"), "--images", str(tmp_path / "photos")
    )
    mask = scene()
    for stem in ("p0", "p1", "p2"):
        back = read_mask(masks / f"{stem}.png")
        assert agreement(back, mask, aside(mask, MIN_AREA)) == 1.0
    with pytest.raises(ValueError, match="annotations.json exists"):
        prelabel(fake, photos, out, fmt=fmt)  # never over a file that may hold corrections


# ---------------------------------------------------------------------------- predict.py
def colour_model(seed: int = 0):
    """A TinySegNet that segments by colour: red -> sunburn, green -> ulcer, blue -> wind
    scarring, grey -> background (its first conv passes R, G, B on, its head compares them)."""
    model = make_tiny(seed=seed)
    conv, bn, head = model.backbone[0], model.backbone[1], model.head
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(3):
            conv.weight[c, c, 1, 1] = 1.0
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        head.weight.zero_()
        head.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))
        for k, c in ((1, 0), (2, 1), (3, 2)):  # class k from channel c against the others
            head.weight[k, :3, 0, 0] = -5.0
            head.weight[k, c, 0, 0] = 10.0
    return model


def colour_photo(mask: np.ndarray) -> np.ndarray:
    colours = np.array([(200, 200, 200), (255, 0, 0), (0, 255, 0), (0, 0, 255)], np.uint8)
    return colours[mask]


@pytest.mark.parametrize("source", ["pth", "onnx"])
@pytest.mark.parametrize("fmt", ["labelme", "coco"])
def test_predict_prelabel_mode_end_to_end(tmp_path, monkeypatch, capsys, source, fmt):
    register_tiny(monkeypatch)
    model = colour_model()
    ckpt = write_project_checkpoint(model, tmp_path / "m.pth", input_size=64)
    model_flag = ["--checkpoint", str(ckpt), "--backend", "torch"]
    if source == "onnx":  # an exported file runs on its own runtime: no --backend
        export_onnx(model, tmp_path / "m.onnx", 64, metadata={"class_names": NAMES})
        model_flag = ["--checkpoint", str(tmp_path / "m.onnx")]
    photos = tmp_path / "photos"
    photos.mkdir()
    shifted = np.roll(scene(), 5, axis=1)  # a second photo: the scene moved right
    for stem, mask in (("a", scene()), ("b", shifted)):
        cv2.imwrite(
            str(photos / f"{stem}.png"), cv2.cvtColor(colour_photo(mask), cv2.COLOR_RGB2BGR)
        )
    out = tmp_path / "drafts"
    argv = ["--mode", "prelabel", *model_flag, "--inputs", str(photos), "--out", str(out)]
    rc = predict.main([*argv, "--format", fmt, "--min-area", str(MIN_AREA), "--rank"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "drafted 2 photo(s)" in printed and "voc_annotation.py --from-" in printed
    rows = list(csv.DictReader((out / "ranking.csv").open()))
    assert sorted(r["photo"] for r in rows) == sorted(str(photos / f"{s}.png") for s in "ab")
    assert float(rows[0]["entropy"]) >= float(rows[1]["entropy"])
    if fmt == "labelme":
        masks = convert_back(tmp_path, "--from-labelme", str(out))
    else:
        masks = convert_back(
            tmp_path, "--from-coco", str(out / "annotations.json"), "--images", str(photos)
        )
    predictor = open_model(tmp_path / f"m.{source}", backend=None if source == "onnx" else "torch")
    for stem in "ab":
        own = predictor.predict(read_image(photos / f"{stem}.png"))
        assert len(np.unique(own)) == 4  # the model sees every class of the scene
        back = read_mask(masks / f"{stem}.png")
        assert agreement(back, own, aside(own, MIN_AREA)) == 1.0
        assert agreement(back, own) >= 0.99


def test_prelabel_runs_without_torch_or_pycocotools(tmp_path):
    """predict.py --mode prelabel from an ONNX file where only requirements-deploy.txt is
    installed (torch, pycocotools ... blocked): labelme drafts and COCO polygons are written
    as in the full install; a region that needs RLE says what to install, writing nothing."""
    from test_deploy_env import run_deploy

    onnx_path = tmp_path / "m.onnx"
    export_onnx(colour_model(), onnx_path, 64, metadata={"class_names": NAMES})
    plain = np.where(scene() == 3, 3, 0).astype(np.uint8)  # the bar alone: no hole
    folders = {}
    for name, mask in (("scene", scene()), ("plain", plain)):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        photo = cv2.cvtColor(colour_photo(mask), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folders[name] / f"{name}.png"), photo)

    def run(fmt: str, name: str, out: Path):
        args = ["--mode", "prelabel", "--checkpoint", str(onnx_path), "--format", fmt]
        return run_deploy("predict.py", *args, "--inputs", str(folders[name]), "--out", str(out))

    done = run("labelme", "scene", tmp_path / "deploy")
    assert done.returncode == 0, done.stderr
    assert predict.main(
        ["--mode", "prelabel", "--checkpoint", str(onnx_path), "--inputs",
         str(folders["scene"]), "--out", str(tmp_path / "full")]
    ) == 0  # fmt: skip
    deploy = json.loads((tmp_path / "deploy" / "scene.json").read_text())
    full = json.loads((tmp_path / "full" / "scene.json").read_text())
    assert deploy["shapes"] == full["shapes"] and len(deploy["shapes"]) >= 4  # with the hole
    done = run("coco", "plain", tmp_path / "coco_plain")
    assert done.returncode == 0, done.stderr
    anns = json.loads((tmp_path / "coco_plain" / "annotations.json").read_text())["annotations"]
    assert anns and all(isinstance(a["segmentation"], list) for a in anns)
    done = run("coco", "scene", tmp_path / "coco_scene")
    assert done.returncode == 2
    assert "needs pycocotools: pip install 'pycocotools>=2.0.8'" in done.stderr
    assert not (tmp_path / "coco_scene" / "annotations.json").exists()
