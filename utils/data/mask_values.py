"""The values the masks of a VOC split hold: read once, cached by file size and mtime.

In the FastSegFormer data set (Orange_Navel_1.5k, Cai et al. 2024) each mask pixel holds a
class id, or 255 for "ignore". The original code turned any other value >= num_classes into
"ignore" without a word, so masks of classes 4, 5 and 7 trained with four classes to a perfect
val score. This project refuses such values (`utils.data.labels.check_class_range`), in every
mask it reads. `check_mask_values` runs that check over a whole split before training starts.
A bad mask of the val split then stops the run at once, not at its first evaluation, and every
bad file is listed in one message.

Reading a mask costs about 2 ms (a 512x512 PNG), so 3 s for the 1.5k masks of the paper's
set. The values found are kept in ``VOC2007/.mask_values.json``, keyed by the mask's path with
its size and mtime, so later runs read only masks that are new or changed. A folder that cannot
be written is scanned without a cache, and an unreadable cache is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.data.dataset import VOCSegmentation
from utils.data.labels import MaskError, read_mask
from utils.data.preprocess import IGNORE_INDEX
from utils.fileio import write_text

CACHE_NAME = ".mask_values.json"
CACHE_FORMAT = "fastsegformer-mask-values/1"
SHOWN = 5  # files named per problem in a message


@dataclass
class MaskScan:
    """What `scan_masks` found: the values of each readable mask, and the unreadable ones."""

    values: dict[Path, tuple[int, ...]]  # mask -> the values it holds, ascending
    errors: list[str]  # one message per mask that could not be read, naming it
    read: int  # masks read from disk (the others came from the cache)


def _load_cache(cache_file: Path) -> dict[str, list]:
    try:
        doc = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
        return {}
    masks = doc.get("masks")
    return masks if isinstance(masks, dict) else {}


def scan_masks(mask_paths: Sequence[Path], cache_file: Path | None = None) -> MaskScan:
    """The values each of `mask_paths` holds (read as `read_mask` reads them: palette, grey
    or VOC colours), taking unchanged masks from `cache_file` and adding the others to it."""
    entries = _load_cache(cache_file) if cache_file is not None else {}
    values: dict[Path, tuple[int, ...]] = {}
    errors: list[str] = []
    read = 0
    for path in mask_paths:
        path = Path(path)
        key = os.path.relpath(path, cache_file.parent) if cache_file is not None else str(path)
        try:
            stat = path.stat()
        except OSError as err:
            errors.append(f"{path}: cannot read the mask ({err.strerror})")
            continue
        entry = entries.get(key)
        if (
            isinstance(entry, list)
            and len(entry) == 3
            and entry[:2] == [stat.st_size, stat.st_mtime_ns]
        ):
            values[path] = tuple(int(v) for v in entry[2])
            continue
        try:
            mask = read_mask(path)  # all 256 values allowed: what is there, not what is valid
        except (MaskError, OSError) as err:
            errors.append(str(err))
            continue
        read += 1
        present = tuple(int(v) for v in np.flatnonzero(np.bincount(mask.ravel(), minlength=256)))
        values[path] = present
        entries[key] = [stat.st_size, stat.st_mtime_ns, list(present)]
    if read and cache_file is not None:
        doc = {"format": CACHE_FORMAT, "masks": entries}
        # a read-only data set is scanned again next time: nothing is lost
        with contextlib.suppress(OSError):
            write_text(cache_file, json.dumps(doc, separators=(",", ":")), fsync=False)
    return MaskScan(values, errors, read)


def _listed(items: Sequence[str]) -> str:
    more = f"; ... {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def check_mask_values(dataset: VOCSegmentation) -> MaskScan:
    """Raise `MaskError` naming every mask of `dataset`'s split that cannot be read or holds a
    value >= num_classes other than 255, with the values found; else return the scan."""
    scan = scan_masks(dataset.mask_paths, dataset.voc / CACHE_NAME)
    k = dataset.num_classes
    outside = {
        path: [v for v in present if v >= k and v != IGNORE_INDEX]
        for path, present in scan.values.items()
    }
    outside = {path: vs for path, vs in outside.items() if vs}
    problems = []
    if outside:
        largest = max(max(vs) for vs in outside.values())
        files = [f"{path}: {', '.join(map(str, vs))}" for path, vs in outside.items()]
        problems.append(
            f"{len(outside)} of {len(dataset.mask_paths)} masks hold values that are not classes "
            f"of --num-classes {k} (expected 0..{k - 1}, or 255 = ignore): {_listed(files)}. If "
            f"they are classes, use --num-classes {largest + 1}; if those pixels should not "
            "count, set them to 255 (values >= num_classes are refused, not ignored as in the "
            "original code)"
        )
    if scan.errors:
        problems.append(f"{len(scan.errors)} masks cannot be read: {_listed(scan.errors)}")
    if problems:
        raise MaskError(
            f"{dataset.split_file}: {' | '.join(problems)}. `python voc_annotation.py --data "
            f"{dataset.voc} --num-classes {k} --check-only` lists every problem"
        )
    return scan
