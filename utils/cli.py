"""Script configuration: an editable dataclass of defaults, every field also a flag.

Each top-level script opens with a ``@dataclass class Config`` whose defaults are the block
users edit (the habit of the original FastSegFormer code). ``parse_config`` turns every field
into a ``--field-name`` command-line flag, so the same defaults can be overridden without
editing the file, and ``save_config`` writes the resolved values next to a run.

Field metadata understood: ``help`` (str) and ``choices`` (list).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """`int | None` -> (int, True); other types -> (type, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_none(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, hints: dict) -> None:
    flag = "--" + f.name.replace("_", "-")
    tp, optional = _unwrap_optional(hints[f.name])
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    kwargs: dict[str, Any] = {"dest": f.name, "default": default}
    help_text = f.metadata.get("help", "")
    kwargs["help"] = f"{help_text} (default: {default!r})" if help_text else f"default: {default!r}"
    if "choices" in f.metadata:
        kwargs["choices"] = list(f.metadata["choices"])

    if tp is bool:
        kwargs.pop("choices", None)
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args else str
        kwargs["nargs"] = "*" if origin is list else "+"
        kwargs["type"] = item
    elif tp in (int, float, str):
        kwargs["type"] = _parse_none(tp) if optional else tp
    else:
        kwargs["type"] = _parse_none(str) if optional else str
    parser.add_argument(flag, **kwargs)


def build_parser(config_cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per dataclass field."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        _add_field(parser, f, hints)
    return parser


def parse_config(
    config_cls: type[T], argv: Sequence[str] | None = None, description: str | None = None
) -> T:
    """Defaults from `config_cls`, overridden by command-line flags; tuples stay tuples."""
    namespace = build_parser(config_cls, description).parse_args(argv)
    hints = typing.get_type_hints(config_cls)
    values = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(namespace, f.name)
        tp, _ = _unwrap_optional(hints[f.name])
        if typing.get_origin(tp) is tuple and value is not None:
            value = tuple(value)
        values[f.name] = value
    return config_cls(**values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass (tuples as lists, paths as strings): YAML/JSON-safe."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved configuration as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
