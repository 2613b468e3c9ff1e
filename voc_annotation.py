"""Check a VOC-layout segmentation data set and write its train/val/test split files.

FastSegFormer (Cai et al. 2024) splits Orange_Navel_1.5k 6:2:2. This script, like the
original's voc_annotation.py, writes ImageSets/Segmentation/{train,val,test,trainval}.txt, and
before that checks every mask (readable, same size as its photo, palette/index values or VOC
palette colours, not a 0/255 binary mask, no value >= --num-classes but 255, the ignore index),
prints a per-class pixel histogram and every problem found. Masks with problems are left out of
the splits; with --check-only nothing is written and the exit status is 1 when any was found.

    python voc_annotation.py --data data/Orange_Navel_1.5k             # check + write splits
    python voc_annotation.py --data DIR --ratios 7 2 1 --seed 1 --force  # replace split files
    python voc_annotation.py --data DIR --convert-colour               # RGB masks -> index PNGs
    python voc_annotation.py --data DIR --binary-to-index 1            # 0/255 masks: 255 -> 1

Existing split files are never overwritten without --force; kept ones are checked (every id
has a usable photo and mask, is listed once, and in one split only). Files are written
atomically and the split files as one change: a failed run leaves them as they were. Photos or
masks whose names are not UTF-8 are reported and left out. Converted masks are rewritten in
place as palette PNGs; the originals are copied to SegmentationClass_original/ first.

Bring your own data: one source is first converted into OUT_ROOT/VOC2007/{JPEGImages,
SegmentationClass} (palette PNG index masks named after the photos), then checked and split
as above (docs/data.md):

    python voc_annotation.py --from-labelme SRC_DIR --data OUT_ROOT \
        --classes background sunburn ulcer wind_scarring [--label-map map.json]
    python voc_annotation.py --from-coco annotations.json --images IMG_DIR --data OUT_ROOT \
        --classes background sunburn ulcer wind_scarring [--label-map map.json]
    python voc_annotation.py --from-masks MASK_DIR --images IMG_DIR --data OUT_ROOT \
        --classes background sunburn --binary-class sunburn     # 0/255 masks: 255 -> sunburn

The index of a class is its position in --classes (written to VOC2007/class_names.txt, which
training reads); --label-map is a JSON object mapping source label names to class names
("__ignore__": 255). A label that is neither is an error naming it and its file, unless
--unknown-as-background. Every item of a source is read and checked before anything is
written: all bad items are reported together, one line each, and nothing is written (a rerun
needs no --force); an interrupted conversion removes what it wrote. Ratios that would leave a
split with a ratio above 0 empty are refused first; a ratio of 0 leaves that split out. Every
run that writes also writes VOC2007/dataset_report.json and dataset_report.png: photos per
split, sizes, class pixel shares, photos per class and anything odd.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from utils.cli import parse_config
from utils.data.class_names import class_names_file, default_class_names, read_class_names
from utils.data.coco import plan_coco
from utils.data.convert import (
    ClassTable,
    ConversionError,
    ConversionResult,
    VocWriter,
    load_label_map,
)
from utils.data.labelme import plan_labelme_folder
from utils.data.labels import (
    MaskError,
    binary_to_index,
    check_sizes,
    class_histogram,
    read_mask,
    save_index_mask,
)
from utils.data.mask_folder import plan_mask_folder
from utils.data.preprocess import CLASS_NAMES, read_image
from utils.data.report import build_report, format_report, write_report
from utils.data.voc import PHOTO_SUFFIXES, read_split_lines, resolve_voc_root
from utils.fileio import (
    DiskFullError,
    describe_removed,
    display_path,
    is_utf8_name,
    remove_stale_temp_files,
    stale_temp_files,
    write_all,
    write_bytes,
)

SPLITS = ("train", "val", "test")


@dataclass
class Config:
    data: str = "data/synthetic_oranges"  # folder containing VOC2007/ (or VOC2007 itself)
    ratios: tuple[float, float, float] = (6.0, 2.0, 2.0)  # train val test (the paper: 6:2:2)
    seed: int = 0  # split shuffling seed
    num_classes: int | None = None  # classes K (None: len(--classes) or 4); masks: 0..K-1, 255
    force: bool = False  # replace existing split files
    check_only: bool = False  # only check the masks and print the histogram; write nothing
    convert_colour: bool = False  # rewrite RGB/RGBA VOC-palette masks as palette index PNGs
    binary_to_index: int | None = None  # rewrite 0/255 masks as index masks: 255 -> this id
    check_photos: bool = True  # also decode every photo (slower; finds corrupt JPEGs)
    # --- bring your own data: convert one source into DATA/VOC2007 first, then check + split
    from_labelme: str | None = None  # folder of labelme JSON files (imageData or imagePath)
    from_coco: str | None = None  # COCO instance-segmentation JSON file (polygons, RLE)
    from_masks: str | None = None  # folder of mask images named like their photos in --images
    images: str | None = None  # photos of --from-coco (file_name relative to it) or --from-masks
    classes: tuple[str, ...] = ()  # names, background first (empty: class_names.txt, else paper's)
    label_map: str | None = None  # JSON {source label: class name or "__ignore__"}
    unknown_as_background: bool = False  # unknown labels -> background instead of an error
    unlabelled_as_background: bool = False  # photos without annotation -> all-background masks
    binary_class: str | None = None  # class name for the 255 pixels of 0/255 binary masks
    report: bool = True  # write VOC2007/dataset_report.json and dataset_report.png


def _undecodable(name: str, folder: Path) -> str:
    return (
        f"{display_path(folder / name)}: the file name is not valid UTF-8 (bytes "
        f"{os.fsencode(name)!r}); split files are UTF-8 text and cannot list it. Rename it "
        "(e.g. `convmv -f latin1 -t utf-8 --notrash --notest DIR`, without --notest to apply); "
        "left out of the splits"
    )


def _photo_index(folder: Path, problems: list[str]) -> dict[str, Path]:
    """stem -> photo path; names that are not UTF-8 are left out with a problem each."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for name in sorted(os.listdir(folder), key=lambda n: n.lower()):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in PHOTO_SUFFIXES:
                continue
            if not is_utf8_name(name):
                problems.append(_undecodable(name, folder))
            elif stem not in found:
                found[stem] = folder / name
    return found


def _mask_index(folder: Path, problems: list[str]) -> dict[str, Path]:
    """stem -> mask PNG path; names that are not UTF-8 are left out with a problem each."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(".png"):
                continue
            if not is_utf8_name(name):
                problems.append(_undecodable(name, folder))
            else:
                found[Path(name).stem] = folder / name
    return found


def _backup(mask_path: Path) -> None:
    backup_dir = mask_path.parent.parent / "SegmentationClass_original"
    target = backup_dir / mask_path.name
    if not target.exists():
        write_bytes(target, mask_path.read_bytes())
        shutil.copystat(mask_path, target)


@dataclass
class CheckResult:
    """What `check_dataset` found."""

    good: list[str]  # ids whose photo and mask passed every check
    problems: list[str]  # one line each, naming the file; "(warning; kept)" ones are kept
    hist: np.ndarray  # (num_classes + 1,) pixels per class, ignored (255) last
    converted: int  # masks rewritten (--convert-colour, --binary-to-index)
    photos: set[str]  # ids with a photo
    masks: set[str]  # ids with a mask


def check_dataset(cfg: Config) -> CheckResult:
    """Check every photo/mask pair; convert masks on request."""
    voc = resolve_voc_root(cfg.data)
    problems: list[str] = []
    photos = _photo_index(voc / "JPEGImages", problems)
    mask_dir = voc / "SegmentationClass"
    masks = _mask_index(mask_dir, problems)
    for stem in sorted(set(photos) - set(masks)):
        problems.append(f"{photos[stem]}: photo has no mask (expected {mask_dir / stem}.png)")
    for stem in sorted(set(masks) - set(photos)):
        problems.append(f"{masks[stem]}: mask has no photo in {voc / 'JPEGImages'}")

    hist = np.zeros(cfg.num_classes + 1, dtype=np.int64)
    good: list[str] = []
    converted = 0
    for stem in sorted(set(photos) & set(masks)):
        photo_path, mask_path = photos[stem], masks[stem]
        try:
            if cfg.check_photos:
                shape = read_image(photo_path).shape
            else:
                with Image.open(photo_path) as im:
                    shape = (im.height, im.width)
            try:
                mask = read_mask(mask_path, cfg.num_classes)
            except MaskError as err:
                fixed = (
                    binary_to_index(mask_path, cfg.binary_to_index)
                    if cfg.binary_to_index is not None and "binary" in str(err)
                    else None
                )
                if fixed is None or cfg.check_only:
                    raise
                _backup(mask_path)
                save_index_mask(mask_path, fixed)
                converted += 1
                mask = fixed
            check_sizes(shape, mask.shape, photo_path, mask_path)
            if cfg.convert_colour and not cfg.check_only:
                with Image.open(mask_path) as im:
                    colour = im.mode in ("RGB", "RGBA")
                if colour:
                    _backup(mask_path)
                    save_index_mask(mask_path, mask)
                    converted += 1
        except (MaskError, ValueError, OSError) as err:  # FileNotFoundError, PIL's OSErrors
            problems.append(str(err))
            continue
        hist += class_histogram(mask, cfg.num_classes)
        good.append(stem)
    return CheckResult(good, problems, hist, converted, set(photos), set(masks))


def check_ratios(ratios: tuple[float, ...]) -> None:
    """ValueError naming --ratios unless they are three non-negative numbers with a positive sum."""
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"--ratios {ratios}: expected three non-negative numbers, e.g. 6 2 2")


def split_counts(n: int, ratios: tuple[float, ...]) -> dict[str, int]:
    """Photos per split for `n` photos: train and val rounded from their shares, the rest to
    test (to val when test's ratio is 0, to train when val's is 0 too).

    ValueError naming the counts when a split with a ratio above 0 would get no photo (its
    split file would be empty: train.py needs train and val, get_miou.py scores test).
    """
    check_ratios(ratios)
    total = float(sum(ratios))
    train = min(n, round(ratios[0] / total * n))
    val = min(n - train, round(ratios[1] / total * n))
    if ratios[2] == 0:
        train, val = (n, 0) if ratios[1] == 0 else (train, n - train)
    counts = {"train": train, "val": val, "test": n - train - val}
    empty = [s for s, r in zip(SPLITS, ratios, strict=True) if r > 0 and counts[s] == 0]
    if empty:
        shown = " ".join(f"{r:g}" for r in ratios)
        got = ", ".join(f"{s} {c}" for s, c in counts.items())
        raise ValueError(
            f"--ratios {shown} on {n} photos gives {got}: {' and '.join(empty)} would be empty; "
            "a split with a ratio above 0 needs at least one photo. Add photos or change "
            "--ratios (0 leaves a split out, e.g. --ratios 1 1 0)"
        )
    return counts


def existing_split_files(voc: Path) -> list[Path]:
    """The split files (train, val, test, trainval) present in ImageSets/Segmentation/."""
    folder = voc / "ImageSets" / "Segmentation"
    return [folder / f"{s}.txt" for s in (*SPLITS, "trainval") if (folder / f"{s}.txt").is_file()]


def write_splits(cfg: Config, ids: list[str]) -> dict[str, list[str]] | None:
    """Shuffle `ids` with the seed and write the split files; None if they exist (no --force).

    The files are written as one change (``utils.fileio.write_all``): every file is encoded and
    staged first, so a failure leaves the old split files as they were. A split whose ratio is
    0 gets no file; one that would be empty stops the run first (`split_counts`).
    """
    voc = resolve_voc_root(cfg.data)
    folder = voc / "ImageSets" / "Segmentation"
    if existing_split_files(voc) and not cfg.force:
        return None
    counts = split_counts(len(ids), cfg.ratios)
    n_train, n_val = counts["train"], counts["val"]
    order = np.random.default_rng(cfg.seed).permutation(len(ids))
    picks = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
        "trainval": order[: n_train + n_val],
    }
    # a split with ratio 0 is left out: no file (an older one is removed below)
    kept = [s for s, r in zip(SPLITS, cfg.ratios, strict=True) if r > 0]
    kept += ["trainval"] if n_train + n_val else []
    result = {split: sorted(ids[i] for i in picks[split]) for split in kept}
    files = {}
    for split, names in result.items():
        text = "".join(f"{n}\n" for n in names)
        try:
            files[folder / f"{split}.txt"] = text.encode("utf-8")
        except UnicodeEncodeError:
            bad = [display_path(n) for n in names if not is_utf8_name(n)]
            raise ValueError(
                f"ids {bad[:5]} are not UTF-8 text and cannot be written to {folder}; "
                "rename those files (nothing was written)"
            ) from None
    write_all(files)
    for split in (*SPLITS, "trainval"):
        if split not in result:
            (folder / f"{split}.txt").unlink(missing_ok=True)  # of an earlier split (--force)
    return result


def check_split_files(voc: Path, photos: set[str], masks: set[str], usable: set[str]) -> list[str]:
    """Problems of the split files already in ImageSets/Segmentation/ (none written here).

    Every listed id needs a photo, a mask and no problem of its own (`usable`); an id is listed
    once per file and in one of train, val and test only; trainval is train + val.
    """
    problems: list[str] = []
    listed: dict[str, dict[str, int]] = {}  # split -> id -> first line
    for split_file in existing_split_files(voc):
        split = split_file.stem
        try:
            entries = read_split_lines(split_file)
        except ValueError as err:
            problems.append(str(err))
            continue
        seen: dict[str, int] = {}
        for line, i in entries:
            where = f"{split_file}, line {line}: {i}"
            if i in seen:
                problems.append(f"{where} is listed twice (first on line {seen[i]})")
                continue
            seen[i] = line
            if i not in photos:
                problems.append(f"{where} has no photo in {voc / 'JPEGImages'}")
            elif i not in masks:
                problems.append(f"{where} has no mask {voc / 'SegmentationClass' / i}.png")
            elif i not in usable:
                problems.append(f"{where} has a problem of its own (listed above)")
        if not entries:
            problems.append(f"{split_file} lists no images")
        listed[split] = seen
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = sorted(set(listed.get(a, ())) & set(listed.get(b, ())))
        if both:
            more = f", ... ({len(both)} in all)" if len(both) > 5 else ""
            problems.append(
                f"{len(both)} ids are in both {a}.txt and {b}.txt: {', '.join(both[:5])}{more}; "
                "a photo belongs to one split (rewrite them with --force)"
            )
    if "trainval" in listed and "train" in listed and "val" in listed:
        expected = set(listed["train"]) | set(listed["val"])
        if set(listed["trainval"]) != expected:
            extra = sorted(set(listed["trainval"]) - expected)
            lacking = sorted(expected - set(listed["trainval"]))
            problems.append(
                f"trainval.txt is not train.txt + val.txt: {len(extra)} ids only in trainval "
                f"{extra[:5]}, {len(lacking)} missing from it {lacking[:5]} (warning; kept)"
            )
    return problems


def format_histogram(hist: np.ndarray, class_names: list[str]) -> str:
    total = max(int(hist.sum()), 1)
    lines = [f"{'class':<18}{'pixels':>14}{'share %':>10}"]
    for name, count in zip([*class_names, "ignored (255)"], hist, strict=True):
        lines.append(f"{name:<18}{int(count):>14}{100 * count / total:>10.3f}")
    return "\n".join(lines)


def resolve_classes(cfg: Config) -> tuple[Config, list[str]]:
    """(cfg with num_classes and binary_to_index filled in, class names in index order)."""
    if cfg.classes:
        names = list(cfg.classes)
        if cfg.num_classes is not None and cfg.num_classes != len(names):
            raise ValueError(
                f"--num-classes {cfg.num_classes} but --classes names {len(names)} classes; "
                "give one of them (the number of classes is len(--classes))"
            )
    elif saved := _saved_class_names(cfg):
        names = list(saved)
        if cfg.num_classes is not None and cfg.num_classes != len(names):
            path = class_names_file(resolve_voc_root(cfg.data))
            raise ValueError(
                f"--num-classes {cfg.num_classes} but {path} names {len(names)} classes "
                f"({', '.join(names)}); drop --num-classes or fix the file"
            )
    else:
        k = len(CLASS_NAMES) if cfg.num_classes is None else cfg.num_classes
        names = default_class_names(k)
    binary = cfg.binary_to_index
    if cfg.binary_class is not None:
        if cfg.binary_class not in names or cfg.binary_class == names[0]:
            raise ValueError(
                f"--binary-class {cfg.binary_class!r}: expected one of the defect classes "
                f"{', '.join(names[1:])} (set the names with --classes)"
            )
        binary = names.index(cfg.binary_class)
        if cfg.binary_to_index is not None and cfg.binary_to_index != binary:
            raise ValueError(
                f"--binary-class {cfg.binary_class} is class {binary} but --binary-to-index "
                f"says {cfg.binary_to_index}; give one of them"
            )
    return dataclasses.replace(cfg, num_classes=len(names), binary_to_index=binary), names


def _saved_class_names(cfg: Config) -> tuple[str, ...] | None:
    """The names of DATA/VOC2007/class_names.txt when no source is converted (a converter
    writes --classes there), else None."""
    if cfg.from_labelme or cfg.from_coco or cfg.from_masks:
        return None
    try:
        voc = resolve_voc_root(cfg.data)
    except ValueError:
        return None  # no data set yet: reported by the checks
    return read_class_names(voc)


def convert_source(cfg: Config, names: list[str]) -> ConversionResult | None:
    """Convert --from-labelme / --from-coco / --from-masks into cfg.data (None: no source)."""
    sources = {
        "--from-labelme": cfg.from_labelme,
        "--from-coco": cfg.from_coco,
        "--from-masks": cfg.from_masks,
    }
    given = [flag for flag, value in sources.items() if value]
    if not given:
        if cfg.label_map or cfg.images:
            flag = "--label-map" if cfg.label_map else "--images"
            raise ConversionError(
                f"{flag} is only used with --from-labelme, --from-coco or --from-masks"
            )
        return None
    if len(given) > 1:
        raise ConversionError(f"give one source to convert, not {' and '.join(given)}")
    if (cfg.from_coco or cfg.from_masks) and not cfg.images:
        raise ConversionError(f"{given[0]} needs --images DIR (the folder of the photos)")
    if cfg.check_only:
        raise ConversionError(f"{given[0]} writes a data set; it cannot run with --check-only")
    table = ClassTable(
        tuple(names),
        load_label_map(cfg.label_map, names),
        unknown_as_background=cfg.unknown_as_background,
        label_map_path=cfg.label_map,
    )
    writer = VocWriter(cfg.data, force=cfg.force)
    # every item is read and checked first: all problems are reported together, nothing written
    if cfg.from_labelme:
        plan = plan_labelme_folder(cfg.from_labelme, table, cfg.unlabelled_as_background)
    elif cfg.from_coco:
        plan = plan_coco(cfg.from_coco, cfg.images, table)
    else:
        plan = plan_mask_folder(
            cfg.from_masks,
            cfg.images,
            table,
            binary_class=cfg.binary_class,
            unlabelled_as_background=cfg.unlabelled_as_background,
        )
    if not plan.items:
        raise ConversionError(f"{given[0]} {plan.source}: no photo to convert")
    if cfg.force or not existing_split_files(writer.voc):  # splits will be written: sizes first
        existing = {p.stem for p in writer.mask_dir.glob("*.png")}
        split_counts(len(existing | {item.stem for item in plan.items}), cfg.ratios)
    with _sigterm_as_interrupt():
        return writer.write(plan)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so that an interrupted conversion removes
    what it had written (as Ctrl-C does) instead of leaving half a data set."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _temp_files(voc: Path, check_only: bool) -> None:
    """Remove (report, with --check-only) temporary files an interrupted run left in `voc`."""
    if check_only:
        stale = stale_temp_files(voc, recursive=True)
        if stale:
            shown = ", ".join(display_path(p) for p in stale[:5])
            print(
                f"{len(stale)} temporary file(s) left by an interrupted write (removed by the "
                f"next run without --check-only): {shown}"
            )
        return
    removed = remove_stale_temp_files(voc, recursive=True)
    if removed:
        print(describe_removed([Path(display_path(p)) for p in removed]))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    try:
        cfg, names = resolve_classes(cfg)
        check_ratios(cfg.ratios)
        conversion = convert_source(cfg, names)
        voc = resolve_voc_root(cfg.data)
    except ValueError as err:  # ConversionError included: it names the file and the fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: nothing of the conversion into {cfg.data} was kept", file=sys.stderr)
        return 130
    _temp_files(voc, cfg.check_only)
    if not cfg.check_only and (cfg.force or not existing_split_files(voc)):
        ignored: list[str] = []  # reported by the checks below
        photos = _photo_index(voc / "JPEGImages", ignored)
        pairs = photos.keys() & _mask_index(voc / "SegmentationClass", ignored).keys()
        try:  # before any mask is converted: at most these pairs are usable
            if pairs:
                split_counts(len(pairs), cfg.ratios)
        except ValueError as err:
            print(f"error: {err}; nothing was written", file=sys.stderr)
            return 2
    if conversion is not None:
        print(conversion.summary())
        print(f"class ids: {', '.join(f'{k} {n}' for k, n in enumerate(names))}\n")
    check = check_dataset(cfg)
    good, problems = check.good, check.problems
    print(f"data set: {voc}")
    print(f"{len(good)} photo/mask pairs passed the checks")
    if check.converted:
        print(
            f"converted {check.converted} masks to index PNGs (originals in "
            "SegmentationClass_original/)"
        )
    print(format_histogram(check.hist, names))
    if problems:
        print(f"\n{len(problems)} problems:")
        for p in problems:
            print(f"  - {p}")
    errors = [p for p in problems if "(warning; kept)" not in p]
    if errors and len(good) > 0:
        print(f"\n{len(errors)} files are left out of the splits until fixed.")
    # split files that stay as they are are checked too
    kept = existing_split_files(voc) if (cfg.check_only or not cfg.force) else []
    split_problems = check_split_files(voc, check.photos, check.masks, set(good)) if kept else []
    split_errors = [p for p in split_problems if "(warning; kept)" not in p]
    if split_problems:
        print(f"\n{len(split_problems)} problems in the split files {[p.name for p in kept]}:")
        for p in split_problems:
            print(f"  - {p}")
    elif kept:
        print(f"\nsplit files {[p.name for p in kept]}: every listed id is usable")
    if cfg.check_only:
        return 1 if errors or split_errors else 0
    if not good:
        print("error: no usable photo/mask pairs; no split files written", file=sys.stderr)
        return 1
    folder = voc / "ImageSets" / "Segmentation"
    try:
        splits = write_splits(cfg, good)
    except DiskFullError as err:  # says which file and that none was changed
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # ratios that leave a split empty, names that are not UTF-8
        print(f"error: {err}; the split files in {folder} are as they were", file=sys.stderr)
        return 2
    except OSError as err:
        print(
            f"error: writing the split files in {folder} failed ({err}); they are as they were",
            file=sys.stderr,
        )
        return 2
    if splits is None:
        print(f"\nsplit files already exist in {folder}; not overwritten (use --force to replace)")
    else:
        counts = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        print(f"\nwrote split files to {folder}: {counts} (seed {cfg.seed}, ratios {cfg.ratios})")
    if cfg.report:
        notes = conversion.notes if conversion is not None else []
        report = build_report(voc, good, names, problems, notes)
        json_path, png_path = write_report(report, voc)
        print(f"\n{format_report(report)}\nreport: {json_path}, {png_path}")
    if conversion is not None:
        print(f"\nnext: python train.py --data {cfg.data} --num-classes {len(names)}")
    return 1 if errors or split_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
