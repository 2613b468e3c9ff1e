"""Script configuration: an editable dataclass of defaults, every field also a flag (tyro).

Each script opens with a ``@dataclass class Config`` whose defaults are the block users edit
(the habit of the original FastSegFormer code). Every field reads ``name: type = default  #
help``; the comment after the field is its help text::

    @dataclass
    class Config:
        epochs: int = 1000  # total epochs
        lr_schedule: Literal[tuple(SCHEDULES)] = "cos"  # a key of the registry that runs it
        class_weights: tuple[float, ...] = ()  # --class-weights 1 3 6 6
        amp: bool = False  # --amp / --no-amp

``parse_config`` turns every field into a ``--field-name`` flag with tyro
(https://brentyi.github.io/tyro/): flags are never abbreviated, an unknown or misspelt flag is
an error that names it, a value outside a ``Literal`` lists the valid ones, and a wrong type
says what was expected; each of these prints the message and exits with status 2. A choice is
written once, as a ``Literal`` of the registry's keys, so a new schedule, loss or backend is a
change in its registry only. ``save_config`` writes the resolved values next to a run.

A plain module: imports nothing of the project but ``utils.fileio`` (atomic writes).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tyro
import yaml

from utils.fileio import create_new, write_text

T = TypeVar("T")


def parse_config(
    config_cls: type[T],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    default: T | None = None,
    renamed: Mapping[str, str] | None = None,
) -> T:
    """`config_cls` filled from its defaults (or `default`'s values), overridden by `argv`.

    `argv` None reads sys.argv[1:]. Exits with status 2 and a message naming the flag on an
    unknown flag, a missing value, a value of the wrong type or outside its choices.
    `renamed` maps old flag spellings to their new names: an old one still works, with one
    line on stderr naming the new one.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if renamed:
        args = [_rename(arg, renamed) for arg in args]
    return tyro.cli(config_cls, args=args, description=description, default=default)


def _rename(arg: str, renamed: Mapping[str, str]) -> str:
    flag, eq, value = arg.partition("=")
    if flag not in renamed:
        return arg
    print(f"note: {flag} is now {renamed[flag]}; {flag} still works", file=sys.stderr)
    return f"{renamed[flag]}{eq}{value}"


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass (tuples as lists, paths as strings): YAML/JSON-safe."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(config_cls: type[T], values: dict[str, Any], **overrides: Any) -> T:
    """`config_cls` from a saved dict (e.g. a checkpoint's "config"); unknown keys are left out.

    Lists saved for tuple fields become tuples again; fields missing from `values` keep their
    defaults; `overrides` win over both.
    """
    hints = typing.get_type_hints(config_cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        if not f.init:  # derived in __post_init__
            continue
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif f.name in values:
            value = values[f.name]
            if isinstance(value, list) and _is_tuple_type(hints[f.name]):
                value = tuple(value)
            kwargs[f.name] = value
    return config_cls(**kwargs)


def _is_tuple_type(tp: Any) -> bool:
    """tuple[...] or a union holding one (`tuple[int, ...] | None`)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(arg) for arg in typing.get_args(tp))
    return False


def save_config(cfg: Any, path: str | Path, *, exclusive: bool = False) -> Path:
    """Write the resolved configuration as YAML (atomically: a temp file, then a rename).

    `exclusive`: only if `path` does not exist yet (FileExistsError otherwise), the way a run
    claims its folder (``utils.fileio.create_new``).
    """
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if exclusive:
        return create_new(path, text.encode("utf-8"))
    return write_text(path, text)
