"""Class names of a data set: ``VOC2007/class_names.txt``, one name per line, in index order.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) names
four classes: 0 background, 1 sunburn, 2 ulcer, 3 wind scarring. A data set of other defects
names its own: voc_annotation.py's converters (``--classes background scab rot ...``) write
them to this file, training reads it (or ``--class-names``) and stores the names in the run's
config and every checkpoint, and from there they reach predictions, evaluation, exports,
grading and the app.

The file is UTF-8 text, one name per line, background first; a byte-order mark, Windows line
ends and blank lines at the end are tolerated, a blank line between names is not (it would
shift every index after it).

Imports the paper's names (`utils.data.preprocess`) and the atomic writer (`utils.fileio`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from utils.data.preprocess import CLASS_NAMES
from utils.fileio import write_bytes

FILE_NAME = "class_names.txt"


class ClassNamesError(ValueError):
    """Class names that cannot be used; the message names where they came from and why."""


def default_class_names(num_classes: int) -> list[str]:
    """The paper's four class names, or class_0..class_{K-1} for another class count."""
    if num_classes == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class_{k}" for k in range(num_classes)]


def check_class_names(names: Sequence[str], where: str) -> tuple[str, ...]:
    """`names` as a tuple if they can name classes (two or more, each non-empty text without
    surrounding spaces or line breaks, no name twice); else `ClassNamesError` naming `where`."""
    names = tuple(names)
    if len(names) < 2:
        raise ClassNamesError(
            f"{where}: {len(names)} class name(s); need at least two, background first "
            "(e.g. background sunburn ulcer wind_scarring)"
        )
    for k, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or name != name.strip() or "\n" in name:
            raise ClassNamesError(
                f"{where}: class {k} is named {name!r}; expected a non-empty name without "
                "surrounding spaces or line breaks"
            )
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    if twice:
        raise ClassNamesError(f"{where}: class names {', '.join(twice)} given more than once")
    return names


def class_names_file(voc: str | Path) -> Path:
    """The class-name file of the VOC2007 folder `voc`."""
    return Path(voc) / FILE_NAME


def read_class_names(voc: str | Path) -> tuple[str, ...] | None:
    """The names in ``voc/class_names.txt`` (`voc`: the VOC2007 folder), None without the file.

    Raises `ClassNamesError` naming the file (and line) when it is not usable.
    """
    path = class_names_file(voc)
    if not path.is_file():
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ClassNamesError(
            f"{path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); "
            "expected one class name per line"
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line:
            raise ClassNamesError(
                f"{path}, line {number}: blank; expected one class name per line, in index "
                "order (a blank line would shift every class after it)"
            )
    return check_class_names(lines, str(path))


def write_class_names(voc: str | Path, names: Sequence[str]) -> Path:
    """Write ``voc/class_names.txt`` atomically (one name per line, in index order)."""
    names = check_class_names(names, str(class_names_file(voc)))
    return write_bytes(class_names_file(voc), "".join(f"{n}\n" for n in names).encode("utf-8"))
