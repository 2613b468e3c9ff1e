"""What every annotation converter shares: class names, label maps, photos, the VOC writer.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
on a PASCAL VOC layout: ``VOC2007/JPEGImages/<id>.jpg`` and ``VOC2007/SegmentationClass/<id>.png``,
a palette PNG whose pixel values are class ids. Users bring labelme folders
(``utils.data.labelme``), COCO files (``utils.data.coco``) or folders of mask images
(``utils.data.mask_folder``); each of those reads its format and hands (photo, index mask)
pairs to `VocWriter`, which writes the VOC layout. Here:

- `ClassTable`: class names in index order (``--classes``), a label map from source label names
  to class names (``--label-map map.json``), and what to do with a label that is in neither: an
  error naming the label and the file, or background when asked (``--unknown-as-background``).
  A label mapped to ``"__ignore__"`` becomes the ignore index 255.
- `decode_photo`: a photo's bytes, checked, with its EXIF orientation resolved, ready to copy.
- `check_items`: every converter lists its source as `Item`s and has them all read and checked
  before anything is written; every problem is reported at once (`ConversionProblems`), and
  files that are not annotations are skipped with a note (the same policy for all three).
- `VocWriter`: writes a checked `ConversionPlan` as one change: the photo and the mask of each
  id atomically (temporary file in the same folder, then ``os.replace``), class_names.txt,
  and on a failure or an interrupt removes what it created; it refuses to write two sources to
  one id, and keeps notes of anything odd for the data-set report.
"""

from __future__ import annotations

import glob
import io
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from utils.data.class_names import (
    ClassNamesError,
    check_class_names,
    class_names_file,
    write_class_names,
)
from utils.data.labels import save_index_mask
from utils.data.preprocess import IGNORE_INDEX
from utils.fileio import display_path, host_tag, is_utf8_name, write_bytes, write_text, writer_gone

IGNORE_LABEL = "__ignore__"  # label-map target that marks pixels as ignore (255)
EXIF_ORIENTATION = 0x0112
# PIL format -> suffix of the photos we copy unchanged (the VOC loader reads these).
COPY_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}


class ConversionError(ValueError):
    """A source file or flag that cannot be converted; the message names it and says why."""


# ------------------------------------------------------------------------------ class names


def load_label_map(path: str | Path | None, classes: Sequence[str]) -> dict[str, str]:
    """{source label: class name} from a JSON object file; every target must be a class name
    (or "__ignore__"). None -> {}."""
    if path is None or str(path) == "":
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"--label-map {path}: file not found; expected a JSON object")
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"--label-map {path}: not valid JSON ({err})") from err
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ConversionError(
            f'--label-map {path}: expected a JSON object of names, e.g. {{"wind scar": '
            f'"wind_scarring", "navel": "background"}}'
        )
    bad = {k: v for k, v in mapping.items() if v not in classes and v != IGNORE_LABEL}
    if bad:
        source, target = next(iter(bad.items()))
        raise ConversionError(
            f"--label-map {path}: {source!r} maps to {target!r}, which is not one of the "
            f"classes ({', '.join(classes)}) nor {IGNORE_LABEL!r}"
        )
    return mapping


@dataclass
class ClassTable:
    """Source label -> class index: through the label map, then by position in `classes`."""

    classes: tuple[str, ...]
    label_map: dict[str, str] = field(default_factory=dict)
    unknown_as_background: bool = False
    label_map_path: str | None = None
    unknown: Counter = field(default_factory=Counter)  # label -> times painted as background
    used: Counter = field(default_factory=Counter)  # label -> shapes/annotations converted

    def __post_init__(self) -> None:
        try:
            self.classes = check_class_names(self.classes, "--classes")
        except ClassNamesError as err:
            raise ConversionError(str(err)) from None
        self._index = {name: k for k, name in enumerate(self.classes)}

    def index(self, label: str, source: str | Path) -> int:
        """Class index of `label` found in `source` (255 for "__ignore__")."""
        name = self.label_map.get(label, label)
        self.used[label] += 1
        if name == IGNORE_LABEL:
            return IGNORE_INDEX
        if name in self._index:
            return self._index[name]
        if self.unknown_as_background:
            self.unknown[label] += 1
            return 0
        where = f" nor in {self.label_map_path}" if self.label_map_path else ""
        raise ConversionError(
            f"{source}: label {label!r} is not one of the classes ({', '.join(self.classes)})"
            f"{where}; map it with --label-map (a JSON file such as "
            f'{{"{label}": "background"}}), add it to --classes, or pass '
            "--unknown-as-background"
        )


# ------------------------------------------------------------------------------ photos


@dataclass
class Photo:
    """An encoded photo ready to be written as it is, with the size its pixels have."""

    data: bytes
    suffix: str  # ".jpg", ".png" or ".bmp"
    height: int
    width: int
    note: str | None = None  # what was done to it, for the report (re-oriented, re-encoded)


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def decode_photo(
    data: bytes,
    source: str | Path,
    expect_hw: tuple[int, int] | None = None,
    orientation: str = "apply",
) -> Photo:
    """Check a photo's bytes and settle its EXIF orientation.

    The project's reader (OpenCV) turns photos by their EXIF orientation tag, and so does
    labelme when it shows one to be annotated. `orientation`:

    - "apply": annotations were drawn on the turned photo (labelme): JPEG/PNG/BMP bytes are
      copied as they are (every reader that honours the tag sees what the annotator saw);
    - "match": annotations say the size they were drawn at (COCO `width`/`height`): the photo is
      taken turned if that size fits, else as stored; a stored-as-is photo with a turning tag is
      re-encoded as PNG without the tag, so that no reader turns it away from its mask.

    Formats other than JPEG/PNG/BMP are re-encoded as PNG (lossless).
    Raises `ConversionError` naming `source` when the bytes are not an image or the size
    differs from `expect_hw` (height, width).
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # PIL raises many types for broken files
        raise ConversionError(f"{source}: cannot decode the photo ({err})") from err
    tag = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    turned = ImageOps.exif_transpose(image) if tag != 1 else image
    stored_hw = (image.height, image.width)
    turned_hw = (turned.height, turned.width)
    use_turned = True
    if orientation == "match" and expect_hw is not None and tag != 1:
        use_turned = turned_hw == tuple(expect_hw) or stored_hw != tuple(expect_hw)
    chosen = turned if use_turned else image
    height, width = turned_hw if use_turned else stored_hw
    if expect_hw is not None and (height, width) != tuple(expect_hw):
        raise ConversionError(
            f"{source}: photo is {width}x{height} (WxH) but the annotation says "
            f"{expect_hw[1]}x{expect_hw[0]}; expected the photo the annotation was drawn on"
        )
    suffix = COPY_FORMATS.get(image.format or "")
    if suffix is not None and (use_turned or tag == 1):
        ambiguous = orientation == "match" and tag != 1 and stored_hw == turned_hw
        note = (
            f"EXIF orientation {tag}: the photo's size fits both ways; taken as turned by it"
            if ambiguous
            else None
        )
        return Photo(data, suffix, height, width, note)
    note = (
        f"EXIF orientation {tag} ignored (annotated as stored): re-encoded as PNG without it"
        if tag != 1
        else f"{image.format} photo re-encoded as PNG"
    )
    return Photo(_png_bytes(chosen), ".png", height, width, note)


# ------------------------------------------------------------------------------ checking


@dataclass
class Item:
    """One photo of a source: the id it gets, the file it comes from, and how to read it
    (`read() -> (Photo, (H, W) uint8 class ids)`, `ConversionError` naming the file)."""

    stem: str
    source: str | Path
    read: Callable[[], tuple[Photo, np.ndarray]]


@dataclass
class ConversionPlan:
    """Every item of a source, checked (`check_items`), and what was noted on the way."""

    items: list[Item]
    notes: list[str]  # files skipped on purpose (unlabelled photos, other JSON files) and why
    unknown: dict[str, int]  # labels painted as background by --unknown-as-background
    source: str
    classes: tuple[str, ...]


class ConversionProblems(ConversionError):
    """Items of a source that cannot be converted, all of them; nothing was written."""

    def __init__(self, source: str, problems: Sequence[str], total: int) -> None:
        self.problems = list(problems)
        head = (
            f"{source}: {len(self.problems)} of {total} item(s) cannot be converted; nothing "
            "was written (fix them and run again):"
        )
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


def check_pair(
    stem: str, photo: Photo, mask: np.ndarray, source: str | Path, taken: dict[str, str]
) -> None:
    """`ConversionError` naming `source` unless `stem` can name a photo of the VOC set (not
    already in `taken`, id -> source, which it is added to) and `mask` fits the photo."""
    if not stem or stem.startswith(".") or "/" in stem or "\\" in stem:
        raise ConversionError(f"{source}: cannot name a photo {stem!r}")
    if not is_utf8_name(stem):
        raise ConversionError(
            f"{display_path(source)}: the photo's name is not valid UTF-8 (bytes "
            f"{os.fsencode(stem)!r}); split files are UTF-8 text and could not list it. "
            "Rename the source files (e.g. convmv -f latin1 -t utf-8 --notest DIR, without "
            "--notest to apply)"
        )
    if stem in taken:
        raise ConversionError(
            f"{source}: photo name {stem!r} is already taken by {taken[stem]}; "
            "every photo needs its own name (rename one of them)"
        )
    if mask.shape != (photo.height, photo.width):
        raise ConversionError(
            f"{source}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the photo is "
            f"{photo.width}x{photo.height}"
        )
    taken[stem] = str(source)


def check_items(
    items: Sequence[Item], notes: list[str], table: ClassTable, source: str, problems: list[str]
) -> ConversionPlan:
    """Read and check every item before anything is written; `problems` (found while listing
    the source) and those of the items are raised together as `ConversionProblems`.

    The same policy for every converter: an annotation that cannot be converted (unreadable,
    an unknown label, a broken shape or segmentation, a missing or undecodable photo, a size
    that disagrees, a bad mask, two items of one name) is a problem, and all problems are
    reported at once with nothing written; files that are not annotations (photos nobody
    annotated, JSON files of another kind) are skipped and listed in the notes.
    """
    total = len(items) + len(problems)  # the problems so far are items that could not be listed
    problems = list(problems)
    taken: dict[str, str] = {}
    for item in items:
        try:
            photo, mask = item.read()
            check_pair(item.stem, photo, mask, item.source, taken)
        except ConversionError as err:
            problems.append(str(err))
        except OSError as err:  # a file that cannot be read (permissions, I/O)
            problems.append(f"{item.source}: cannot read ({err})")
    if problems:
        raise ConversionProblems(source, problems, total)
    return ConversionPlan(list(items), notes, dict(table.unknown), source, table.classes)


# ------------------------------------------------------------------------------ writing

_MARKER = ".conversion_in_progress.json"  # VOC2007/: what a conversion began to write


class VocWriter:
    """Writes converted pairs into ``ROOT/VOC2007/{JPEGImages,SegmentationClass}``.

    Refuses to start when SegmentationClass/ already holds masks, unless `force` (then files of
    the same name are replaced and the others left alone). `write(plan)` writes a checked plan
    as one change: a failure or an interrupt (Ctrl-C; SIGTERM where the script turns it into
    one) removes the files it had created; a run killed outright (SIGKILL, power cut) leaves
    ``VOC2007/.conversion_in_progress.json``, and the next `VocWriter` on the folder removes
    what that run had begun to write before anything else.
    """

    def __init__(self, root: str | Path, force: bool = False) -> None:
        self.voc = Path(root) / "VOC2007"
        self.photo_dir = self.voc / "JPEGImages"
        self.mask_dir = self.voc / "SegmentationClass"
        self.notes: list[str] = []
        self._recover_interrupted()
        existing = sorted(self.mask_dir.glob("*.png")) if self.mask_dir.is_dir() else []
        if existing and not force:
            raise ConversionError(
                f"{self.mask_dir} already holds {len(existing)} masks; converting into it would "
                "mix two data sets. Choose another --data folder, or pass --force to replace "
                "files of the same name"
            )
        self.sources: dict[str, str] = {}  # id -> source it came from
        self.created: list[Path] = []  # files this writer made that did not exist before
        self.hist = Counter()  # class index -> pixels written

    @property
    def marker(self) -> Path:
        return self.voc / _MARKER

    def _recover_interrupted(self) -> None:
        """Remove what a conversion killed while writing into this folder had written."""
        if not self.marker.is_file():
            return
        try:
            doc = json.loads(self.marker.read_text(encoding="utf-8"))
            pid, host, new_ids = int(doc["pid"]), str(doc["host"]), list(doc["new_ids"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConversionError(
                f"{self.marker}: unreadable record of an interrupted conversion ({err}); remove "
                "it, and the photos and masks that conversion wrote, by hand"
            ) from None
        age = time.time() - self.marker.stat().st_mtime
        if not writer_gone(pid, host, age):
            raise ConversionError(
                f"{self.voc}: another conversion (process {pid}) is writing into it; wait for it "
                "to finish or choose another --data folder"
            )
        removed = 0
        for stem in new_ids:
            for path in [
                *self.photo_dir.glob(f"{glob.escape(stem)}.*"),
                self.mask_dir / f"{stem}.png",
            ]:
                if path.stem == stem and path.is_file():
                    path.unlink()
                    removed += 1
        self.marker.unlink()
        self.notes.append(
            f"{self.voc}: removed {removed} file(s) of {len(new_ids)} id(s) that an interrupted "
            f"conversion from {doc.get('source')} had begun to write"
        )

    def write(self, plan: ConversionPlan) -> ConversionResult:
        """Write every item of `plan` and class_names.txt, as one change (class docstring)."""
        new_ids = [i.stem for i in plan.items if not (self.mask_dir / f"{i.stem}.png").exists()]
        record = {"pid": os.getpid(), "host": host_tag(), "source": plan.source}
        write_text(self.marker, json.dumps({**record, "new_ids": new_ids}))
        try:
            for item in plan.items:
                photo, mask = item.read()
                self.add(item.stem, photo, mask, item.source)
            self.write_class_names(plan.classes)
        except BaseException:
            self.discard()
            raise
        self.marker.unlink()
        written = [i.stem for i in plan.items]
        return ConversionResult(written, plan.notes + self.notes, plan.unknown, plan.source)

    def discard(self) -> None:
        """Remove the files this writer created (a failed or interrupted `write`)."""
        for path in reversed(self.created):
            path.unlink(missing_ok=True)
        self.created.clear()
        self.marker.unlink(missing_ok=True)

    def add(self, stem: str, photo: Photo, mask: np.ndarray, source: str | Path) -> None:
        """Write `<stem><photo.suffix>` and `<stem>.png`; `mask` is (H, W) class ids."""
        check_pair(stem, photo, mask, source, self.sources)
        for other in (
            self.photo_dir.glob(f"{glob.escape(stem)}.*") if self.photo_dir.is_dir() else []
        ):
            if other.suffix.lower() != photo.suffix and other.stem == stem:
                other.unlink()  # a stale photo of another format would shadow the new one
        photo_path, mask_path = (
            self.photo_dir / f"{stem}{photo.suffix}",
            self.mask_dir / f"{stem}.png",
        )
        self.created += [p for p in (photo_path, mask_path) if not p.exists()]
        write_bytes(photo_path, photo.data)
        save_index_mask(mask_path, mask.astype(np.uint8, copy=False))
        if photo.note:
            self.notes.append(f"{source}: {photo.note}")
        values, counts = np.unique(mask, return_counts=True)
        self.hist.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))

    def write_class_names(self, classes: Sequence[str]) -> Path:
        """VOC2007/class_names.txt (`utils.data.class_names`), what training reads."""
        path = class_names_file(self.voc)
        if not path.exists():
            self.created.append(path)
        return write_class_names(self.voc, classes)


@dataclass
class ConversionResult:
    """What a converter did: ids written, notes (skipped files, odd input) for the report."""

    written: list[str]
    notes: list[str]
    unknown: dict[str, int]  # labels painted as background by --unknown-as-background
    source: str

    def summary(self) -> str:
        lines = [f"converted {len(self.written)} photos from {self.source}"]
        if self.unknown:
            shown = ", ".join(f"{k!r} x{v}" for k, v in sorted(self.unknown.items()))
            lines.append(f"unknown labels painted as background: {shown}")
        if self.notes:
            lines.append(f"{len(self.notes)} notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)
