"""Atomic file writing, and the clean-up of what a killed write leaves behind.

Everything the project's tools write (split files, masks, data-set reports, checkpoints,
exported models, CSVs, metrics, charts, overlays) goes through a temporary file in the target's
own folder, flushed to disk, then ``os.replace``d over the target. A reader sees the old file or
the new one, never half of one, and a failed write (an exception, a full disk, Ctrl-C) leaves
the old file as it was and removes its temporary file. A full disk (ENOSPC, or a full quota)
raises ``DiskFullError``, whose message is the one line a script prints: "no space left on
device writing PATH; the previous file is intact" (or "nothing was written" when there was no
file). ``create_new`` writes a file the same way but only where none exists yet: of several
processes creating one name, exactly one succeeds.

A process killed with SIGKILL (or a power cut) cannot remove its temporary file. The names say
who wrote them, ``.<target name>.<pid>-<host>-<random>.tmp<target suffix>``: hidden, and ending
in the target's suffix so that writers that pick the format from the name (``cv2.imwrite``,
matplotlib, PIL, ``onnx.save``) still do. The next run finds them: ``stale_temp_files(folder)``
lists those whose writing process is gone, ``remove_stale_temp_files`` deletes them and returns
them so the tool can say what it cleaned.

``nets/checkpoint`` writes checkpoints with the same temporary names from its own few lines
(``nets`` never imports ``utils``); ``tests/test_safety.py`` checks that both agree.

A plain module: imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

# .<name>.<pid>-<host>-<random>.tmp<suffix>
_TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-(?P<token>[0-9a-f]{8})\.tmp(\.[^.]*)?$"
)
# temporary names of earlier versions: tempfile.mkstemp's ".<name>.<8 random>.tmp", the data-set
# report's ".<stem>.tmp.png" and ".dataset_report.json.tmp"
_LEGACY_TEMP_NAME = re.compile(r"^\..+\.([a-z0-9_]{8}\.tmp|tmp\.png|json\.tmp)$")

OTHER_HOST_STALE_S = 24 * 3600.0  # a temp file of another machine (shared disk): stale after a day
LEGACY_STALE_S = 3600.0  # a temp file without a writer's id: stale once untouched for an hour


class DiskFullError(OSError):
    """No space left on the device (or quota) during an atomic write; the targets are as they
    were and the temporary files are removed. ``str()`` is the message for the user."""

    def __init__(self, path: str | Path, previous: str) -> None:
        super().__init__(errno.ENOSPC, f"no space left on device writing {path}; {previous}")
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from or during, is ENOSPC or EDQUOT (some
    writers, torch.save among them, report the OSError of a full disk as their own error)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def _previous(path: Path) -> str:
    """What a failed write left at `path`, as it is."""
    if path.exists():
        return "the previous file is intact"
    return f"nothing was written ({path.name} did not exist before)"


def host_tag(hostname: str | None = None) -> str:
    """Six hex digits naming this machine in temporary file names."""
    name = socket.gethostname() if hostname is None else hostname
    return f"{zlib.crc32(name.encode('utf-8', 'replace')) & 0xFFFFFF:06x}"


def temp_path_for(path: str | Path) -> Path:
    """A fresh temporary path beside `path` (see the module docstring for the name)."""
    path = Path(path)
    token = secrets.token_hex(4)
    return path.with_name(f".{path.name}.{os.getpid()}-{host_tag()}-{token}.tmp{path.suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that takes a file name; on success it
    replaces `path`, on any error (the writer's included) it is removed and `path` is untouched.

        with atomic_path(out / "overlay.png") as tmp:
            ok = cv2.imwrite(str(tmp), image)    # format from the suffix, kept in `tmp`

    Raises OSError when the writer wrote nothing to the temporary path, `DiskFullError` when
    the disk filled up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"cannot write {path}: the writer produced no file")
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path, _previous(path)) from None
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | Path,
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing through a temporary file (see `atomic_path`).

    `mode` is "w" (text, `encoding`, `newline` as for ``open``) or "wb".
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode {mode!r}; expected 'w' or 'wb'")
    binary = mode == "wb"
    text_args = {} if binary else {"encoding": encoding, "newline": newline}
    with atomic_path(path, fsync=False) as tmp, open(tmp, mode.replace("w", "x"), **text_args) as f:
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write `text` to `path` atomically (UTF-8 unless told); returns `path`.

    The text is encoded before anything is created, so a character the encoding cannot hold
    raises UnicodeEncodeError with `path` untouched.
    """
    return write_bytes(path, text.encode(encoding), fsync=fsync)


def _write_new_file(path: Path, data: bytes, fsync: bool) -> None:
    """`data` into `path`, which must not exist yet (a temporary name), flushed to disk."""
    with open(path, "xb") as f:  # noqa: PTH123
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def create_new(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` only if nothing is there yet; FileExistsError otherwise.

    Atomic and exclusive: the bytes go to a temporary file that is then hard-linked to `path`
    (a link fails where `path` exists), so a reader never sees half a file and of several
    processes creating one name at once exactly one succeeds. On a file system without hard
    links the file is created with O_EXCL and written in place. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        _write_new_file(tmp, data, fsync)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as exc:  # no hard links here (some network and FUSE file systems)
            if is_disk_full(exc):
                raise
            with open(path, "xb") as f:  # noqa: PTH123
                f.write(data)
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path, _previous(path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_all(files: Mapping[str | Path, bytes], *, fsync: bool = True) -> list[Path]:
    """Write several files as one change: every temporary file first, then the replaces.

    Any failure while writing the temporary files (a full disk: `DiskFullError`, Ctrl-C)
    removes them and leaves every target as it was. Returns the targets in the order given.
    """
    staged: list[tuple[Path, Path]] = []
    target = None
    try:
        for target, data in files.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path_for(target)
            staged.append((tmp, target))
            _write_new_file(tmp, data, fsync)
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        if is_disk_full(exc) and target is not None:
            previous = f"none of the {len(files)} files was changed" if len(files) > 1 else None
            raise DiskFullError(target, previous or _previous(Path(target))) from None
        raise
    return [target for _, target in staged]


# -------------------------------------------------------------------------- stale temp files


def is_temp_name(name: str) -> bool:
    """True for a temporary file name written by this module (or an earlier version)."""
    return bool(_TEMP_NAME.match(name) or _LEGACY_TEMP_NAME.match(name))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    except OSError:
        return False
    return True


def writer_gone(pid: int, host: str, age_s: float) -> bool:
    """Whether the writer `pid` of machine `host` (a `host_tag`) of something untouched for
    `age_s` seconds has stopped: its process no longer runs here, or, on another machine (a
    shared disk), the thing is a day old."""
    if host != host_tag():
        return age_s > OTHER_HOST_STALE_S
    return pid != os.getpid() and not _pid_alive(pid)


def _is_stale(path: Path, now: float) -> bool:
    try:
        age = now - path.stat().st_mtime
    except OSError:  # removed meanwhile
        return False
    match = _TEMP_NAME.match(path.name)
    if match is None:  # an earlier version's name: no writer recorded
        return age > LEGACY_STALE_S
    return writer_gone(int(match["pid"]), match["host"], age)


def stale_temp_files(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Temporary files (and folders built under a temporary name) in `folder` (and below, if
    `recursive`) whose writer is gone.

    A file named by this module is stale when its process no longer runs on this machine (one
    of another machine: when untouched for a day); one of an earlier version's names when
    untouched for an hour. Sorted paths; a missing folder has none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    return sorted(p for p in candidates if is_temp_name(p.name) and _is_stale(p, now))


def remove_stale_temp_files(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Delete `stale_temp_files(folder)`; returns what was deleted (for the caller to report)."""
    removed = []
    for path in stale_temp_files(folder, recursive=recursive):
        if any(parent in removed for parent in path.parents):
            continue  # inside a folder removed already
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def describe_removed(removed: list[Path]) -> str:
    """One line for the console: which stale temporary files were deleted."""
    shown = ", ".join(str(p) for p in removed[:5])
    more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
    return f"removed {len(removed)} temporary file(s) left by an interrupted write: {shown}{more}"


# -------------------------------------------------------------------------- file names


def is_utf8_name(name: str | Path) -> bool:
    """False for a name whose bytes on disk are not UTF-8 (Python holds them as surrogates):
    it cannot be written into a UTF-8 text file such as a split file."""
    try:
        str(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str | Path) -> str:
    """`path` as printable text: bytes that are not UTF-8 shown as \\xNN escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")
