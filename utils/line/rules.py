"""Grading rules of the sorting line: the grades a fruit can get, their limits, and their checks.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) segments
defects per pixel; a sorting line turns each fruit's defect shares into a grade
(`utils.line.grading`). The rules say how: grades in order, each with the largest share of the
fruit's area it allows per defect class name, or for all defects together ("total"); a fruit
takes the first grade whose limits all hold, else the reject grade::

    grades:
      - {name: premium, max_share: {total: 0.005}}
      - {name: standard, max_share: {sunburn: 0.10, ulcer: 0.01, wind_scarring: 0.05}}
    reject: reject
    min_fruit_pixels: 400

`load_rules` is the one loader (``python -m utils.line.grading --rules`` and ``gui.py --rules``
use it). It refuses, with one line per problem naming the file, the grade and the key
(`RulesError`): a missing, binary or non-UTF-8 file, YAML/JSON that does not parse or repeats a
key, unknown keys, a grade without a name or without limits, a limit that is not a share in
[0, 1], two grades of one name, grades not ordered from strictest to loosest, and (given the
model's class names) a limit on a class the model lacks.

Strictest to loosest, precisely: a fruit accepted by a grade must be accepted by every later
grade, so the first grade that accepts a fruit is also the best it can get. Each grade's
*effective* limits are compared, per defect class and for the total: a class's share never
exceeds the total, so its effective limit is the smaller of its own limit and the total limit
(1 where there is none); the total never exceeds the sum of the class shares, so the effective
total limit is the smaller of the total limit and the sum of the effective class limits. Grade
i may follow grade j only if each effective limit of i is at least that of j. The classes
summed are the model's defect classes when they are known, else the classes the file names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOTAL = "total"  # the limit on all defects together
TOP_KEYS = ("grades", "reject", "min_fruit_pixels")
GRADE_KEYS = ("name", "max_share")
DEFAULT_SOURCE = "the default grading rules"
_TOLERANCE = 1e-9  # limits compared after summing floats


class RulesError(ValueError):
    """Grading rules that cannot be used; one line per problem, each naming the file, the grade
    and the key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class GradeRule:
    """A grade and its limits: fraction of the fruit area per defect class name (or "total")."""

    name: str
    max_share: dict[str, float] = field(default_factory=dict)

    def accepts(self, shares: dict[str, float], total: float) -> bool:
        for cls, limit in self.max_share.items():
            value = total if cls == TOTAL else shares.get(cls)
            if value is None:
                raise KeyError(
                    f"grade {self.name!r} limits unknown class {cls!r}; "
                    f"known: {sorted(shares)} and 'total'"
                )
            if value > limit:
                return False
        return True


def _default_grades() -> list[GradeRule]:
    return [
        GradeRule("premium", {TOTAL: 0.005}),  # practically clean: under 0.5 % of the peel
        GradeRule("standard", {"sunburn": 0.10, "ulcer": 0.01, "wind_scarring": 0.05}),
    ]


@dataclass
class GradingRules:
    """Ordered grades (strictest first); a fruit failing all of them gets `reject`."""

    grades: list[GradeRule] = field(default_factory=_default_grades)
    reject: str = "reject"
    min_fruit_pixels: int = 400  # smaller regions are specks, not fruit
    source: str = field(default=DEFAULT_SOURCE, compare=False, repr=False)  # named in errors

    def grade(self, shares: dict[str, float], total: float) -> str:
        for rule in self.grades:
            if rule.accepts(shares, total):
                return rule.name
        return self.reject

    @property
    def names(self) -> list[str]:
        """Every grade, strictest first, the reject grade last."""
        return [g.name for g in self.grades] + [self.reject]

    def problems(self, class_names: Sequence[str] | None = None) -> list[str]:
        """One line per problem of these rules (module docstring); `class_names`: the model's,
        background first (None: not known yet, classes are not checked)."""
        out = []
        seen: dict[str, str] = {}
        if not self.grades:
            out.append(f"{self.source}: key grades: empty; give at least one grade")
        for i, rule in enumerate(self.grades):
            where = f"{self.source}: {_grade_label(i, rule.name)}"
            if not isinstance(rule.name, str) or not rule.name.strip():
                out.append(f"{where}, key name: missing or empty; every grade needs a name")
            elif rule.name in seen:
                out.append(f"{where}, key name: {rule.name!r} is already {seen[rule.name]}")
            else:
                seen[rule.name] = _grade_label(i, rule.name)
            if not rule.max_share:
                out.append(
                    f"{where}, key max_share: no limits; give the largest share of the fruit per "
                    "defect class or for the total, e.g. {total: 0.005}"
                )
            for cls, limit in rule.max_share.items():
                if not _is_share(limit):
                    out.append(
                        f"{where}, key max_share.{cls}: {limit!r} is not a share in [0, 1] "
                        "(a fraction of the fruit area: 0.05 is 5 %)"
                    )
        if not isinstance(self.reject, str) or not self.reject.strip():
            out.append(f"{self.source}: key reject: {self.reject!r}; expected a grade name")
        elif self.reject in seen:
            out.append(f"{self.source}: key reject: {self.reject!r} is already {seen[self.reject]}")
        pixels = self.min_fruit_pixels
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
            out.append(
                f"{self.source}: key min_fruit_pixels: {pixels!r}; expected a whole number of "
                "pixels >= 1"
            )
        if class_names is not None:
            out += self._class_problems(list(class_names))
        if not out:  # the order is only meaningful for well-formed limits
            out += self._order_problems(None if class_names is None else list(class_names)[1:])
        return out

    def check(self, class_names: Sequence[str] | None = None) -> GradingRules:
        """These rules if `problems(class_names)` finds none, else `RulesError` listing them."""
        found = self.problems(class_names)
        if found:
            raise RulesError(found)
        return self

    def _class_problems(self, class_names: list[str]) -> list[str]:
        out = []
        defects = class_names[1:]
        if TOTAL in defects:
            out.append(
                f"{self.source}: the model has a class named {TOTAL!r}, the name of the limit on "
                "all defects together; rename the class (train.py --class-names)"
            )
        for i, rule in enumerate(self.grades):
            for cls in rule.max_share:
                if cls == TOTAL or cls in defects:
                    continue
                what = (
                    f"{cls!r} is the background class, not a defect"
                    if class_names and cls == class_names[0]
                    else f"the model has no class {cls!r}"
                )
                hint = "; pass --rules FILE with limits for them" if self._default else ""
                out.append(
                    f"{self.source}: {_grade_label(i, rule.name)}, key max_share.{cls}: {what} "
                    f"(its defect classes: {', '.join(defects)}; or 'total'){hint}"
                )
        return out

    @property
    def _default(self) -> bool:
        return self.source == DEFAULT_SOURCE

    def _order_problems(self, defects: list[str] | None) -> list[str]:
        if defects is None:  # the classes the rules name
            defects = sorted({c for g in self.grades for c in g.max_share if c != TOTAL})
        limits = [effective_limits(g, defects) for g in self.grades]
        out = []
        for i in range(1, len(self.grades)):
            for j in range(i):  # grade j comes first, so it must allow no more than grade i
                looser = [
                    f"max_share.{key} ({limits[i][key]:g} < {limits[j][key]:g})"
                    for key in [*defects, TOTAL]
                    if limits[j][key] > limits[i][key] + _TOLERANCE
                ]
                if looser:
                    here = _grade_label(i, self.grades[i].name)
                    there = _grade_label(j, self.grades[j].name)
                    out.append(
                        f"{self.source}: {here}, key {', '.join(looser)}: stricter than {there} "
                        "before it (effective limits); grades run from strictest to loosest "
                        "(each accepts every fruit the grades before it accept): reorder them or "
                        "change the limits"
                    )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The rules as a rules file holds them (YAML/JSON-safe)."""
        return {
            "grades": [{"name": g.name, "max_share": dict(g.max_share)} for g in self.grades],
            "reject": self.reject,
            "min_fruit_pixels": self.min_fruit_pixels,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "grading rules") -> GradingRules:
        """Rules from the mapping a rules file holds; `RulesError` naming `source` on problems."""
        return _parse(data, source).check()


def effective_limits(rule: GradeRule, defects: Sequence[str]) -> dict[str, float]:
    """The largest share of each defect class and of the total that `rule` lets through, given
    that a class's share never exceeds the total and the total never exceeds the sum of the
    class shares (module docstring)."""
    total = min(1.0, rule.max_share.get(TOTAL, 1.0))
    per_class = {c: min(rule.max_share.get(c, 1.0), total) for c in defects}
    return {**per_class, TOTAL: min(total, sum(per_class.values()))}


def load_rules(path: str | Path | None, class_names: Sequence[str] | None = None) -> GradingRules:
    """The grading rules of the file at `path` (YAML, or JSON by its suffix), or the defaults
    when `path` is None or empty, checked (and against `class_names`, the model's, when given).

    Raises `RulesError`, one line per problem naming the file, the grade and the key.
    """
    if path is None or str(path) == "":
        return GradingRules().check(class_names)
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "file not found"
        raise RulesError([f"{path}: {what}; expected a YAML or JSON grading rules file"])
    data = _read_document(path)
    return _parse(data, str(path)).check(class_names)


def _read_document(path: Path) -> Any:
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise RulesError(
            [f"{path}: not a text file (a NUL byte at offset {raw.index(0)}); expected YAML rules"]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RulesError(
            [f"{path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start})"]
        ) from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, object_pairs_hook=_unique_json_keys)
        except json.JSONDecodeError as err:
            raise RulesError(
                [f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"]
            ) from None
        except ValueError as err:  # a repeated key
            raise RulesError([f"{path}: not valid JSON rules: {err}"]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RulesError([f"{path}: not valid YAML{where}: {problem}"]) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (the YAML spec forbids it;
    PyYAML would keep the last value silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
            )
        seen.add(key if isinstance(key, (str, int, float, bool)) else id(key_node))
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice in one object")
        out[key] = value
    return out


def _grade_label(index: int, name: Any) -> str:
    """'grade 2 'standard'' (1-based position, and the name when there is one)."""
    return f"grade {index + 1} {name!r}" if isinstance(name, str) and name else f"grade {index + 1}"


def _is_share(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )


def _parse(data: Any, source: str) -> GradingRules:
    """GradingRules from a rules document; the structural problems (what `problems` cannot see
    once the values are in dataclasses) raise `RulesError` here."""
    out: list[str] = []
    if data is None:
        raise RulesError([f"{source}: empty; expected a mapping with 'grades' (a list of grades)"])
    if not isinstance(data, dict):
        raise RulesError(
            [f"{source}: expected a mapping with 'grades', found {type(data).__name__}"]
        )
    for key in data:
        if key not in TOP_KEYS:
            out.append(f"{source}: key {key!r}: unknown; expected {', '.join(TOP_KEYS)}")
    grades_doc = data.get("grades")
    if "grades" not in data:
        out.append(f"{source}: key grades: missing; give the grades, strictest first")
        grades_doc = []
    elif not isinstance(grades_doc, list):
        out.append(f"{source}: key grades: expected a list of grades, found {grades_doc!r}")
        grades_doc = []
    grades = []
    for i, g in enumerate(grades_doc):
        name = g.get("name") if isinstance(g, dict) else None
        where = f"{source}: {_grade_label(i, name)}"
        if not isinstance(g, dict):
            out.append(f"{where}: expected a mapping with {' and '.join(GRADE_KEYS)}, found {g!r}")
            continue
        for key in g:
            if key not in GRADE_KEYS:
                out.append(f"{where}, key {key!r}: unknown; expected {', '.join(GRADE_KEYS)}")
        if "name" in g and not isinstance(name, str):
            out.append(f"{where}, key name: {name!r} is not text")
            name = ""
        limits = g.get("max_share", {})
        if not isinstance(limits, dict):
            out.append(f"{where}, key max_share: expected a mapping of class name -> share")
            limits = {}
        for cls in limits:
            if not isinstance(cls, str):
                out.append(f"{where}, key max_share.{cls}: the class name is not text")
        grades.append(GradeRule(name or "", {str(k): v for k, v in limits.items()}))
    if out:
        raise RulesError(out)
    return GradingRules(
        grades,
        data.get("reject", "reject"),
        data.get("min_fruit_pixels", 400),
        source=source,
    )
