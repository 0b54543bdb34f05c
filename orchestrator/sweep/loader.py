"""Load a sweep file: YAML in, a validated `SweepFile` out, or one line naming the culprit.

Errors read `sweep.yaml:12: models[1].num_expert: unknown key (did you mean 'num_experts'?)`:
the file, the line (from the YAML parser's node marks), the key path, what is wrong. The
first problem in file order is reported, so fixing errors top to bottom works.
"""
from __future__ import annotations

import re
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .aliases import MAX_EXPANDED_NODES, expanded_size_exceeds
from .schema import FieldProblem, ModelEntry, SweepFile
from .suggest import did_you_mean

Loc = tuple[str | int, ...]
_TYPE_WORDS = {"int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
               "bool_type": "true or false", "string_type": "a string", "list_type": "a list",
               "model_type": "a mapping of keys", "dict_type": "a mapping of keys",
               "int_from_float": "an integer", "float_parsing": "a number"}


class SweepError(ValueError):
    """A bad sweep. The message is one line naming the file, line and key where known.

    (Not the CLI's `InputError`: importing that would import the whole CLI; `submit`
    turns this into one.)
    """

    def __init__(self, message: str, path: Path | None = None, line: int | None = None, key: str = "") -> None:
        super().__init__(message)
        self.path, self.line, self.key = path, line, key

    @classmethod
    def at(cls, path: Path, line: int | None, key: str, message: str) -> "SweepError":
        where = f"{path}:{line}" if line else str(path)
        return cls(f"{where}: {key + ': ' if key else ''}{message}", path, line, key)


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepFile:
    """Read, parse and validate a sweep file (see `schema.SweepFile`).

    `overrides` replace top-level keys after parsing (the CLI's `--set key=value`); errors in
    them are reported as `--set key` rather than by line.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SweepError.at(path, None, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError.at(path, None, "", f"cannot read: {exc}") from None
    return parse_sweep(text, path, overrides)


def parse_sweep(text: str, path: Path = Path("<sweep>"), overrides: dict[str, Any] | None = None) -> SweepFile:
    """Validate sweep `text`; `path` is only used in messages and as the default name."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SweepError.at(path, mark.line + 1 if mark else None, "", f"not valid YAML: {problem}") from None
    if not isinstance(root, yaml.MappingNode):
        raise SweepError.at(path, root.start_mark.line + 1 if root else None, "",
                         "not a sweep: the file must be a YAML mapping (name:, models:, impl:, ...)")
    if expanded_size_exceeds(root):
        raise SweepError.at(path, None, "", f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes;"
                            " a sweep is a few hundred (write the values out, or use fewer nested aliases)")
    lines = _line_map(root, (), path)
    data = yaml.safe_load(text)
    data.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem).strip("-.") or "sweep")
    for key, value in (overrides or {}).items():
        data[key] = value
        for loc in [loc for loc in lines if loc[:1] == (key,)]:
            del lines[loc]
    workload = data.get("workload") if isinstance(data.get("workload"), str) else "mlp"
    try:
        return SweepFile.model_validate(data, context={"workload": workload})
    except ValidationError as exc:
        raise _first_error(exc, data, lines, path, set(overrides or ())) from None


def _line_map(node: yaml.Node, loc: Loc, path: Path) -> dict[Loc, int]:
    """1-based line of every key path in the YAML tree; duplicate keys are errors."""
    out = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value
            if name in seen:
                raise SweepError.at(path, key.start_mark.line + 1, _render(loc + (name,)),
                                 "duplicate key (YAML would silently keep the last one)")
            seen.add(name)
            out.update(_line_map(value, loc + (name,), path))
            out[loc + (name,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_line_map(item, loc + (i,), path))
    return out


def _first_error(exc: ValidationError, data: Any, lines: dict[Loc, int], path: Path,
                 overridden: set[str]) -> SweepError:
    found = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldProblem):
            loc += ctx_error.loc
        loc = _as_written(loc, data)
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        found.append((line or 0, loc, err))
    line, loc, err = min(found, key=lambda f: f[0])
    if loc and loc[0] in overridden:
        return SweepError.at(Path("--set"), None, _render(loc), _message(err, loc))
    return SweepError.at(path, line or None, _render(loc), _message(err, loc))


def _as_written(loc: Loc, data: Any) -> Loc:
    """Drop the `[0]` pydantic adds when a grid axis was written as a single value."""
    node, out = data, []
    for part in loc:
        if isinstance(part, int) and not isinstance(node, list):
            continue
        out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(out)


def _render(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _owner(loc: Loc) -> type[BaseModel]:
    return ModelEntry if len(loc) >= 2 and loc[0] == "models" else SweepFile


def _message(err: Mapping[str, Any], loc: Loc) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        return f"unknown key{did_you_mean(key, _owner(loc[:-1]).model_fields)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"{value!r} is not one of {', '.join(choices)}{hint}"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {value!r} ({type(value).__name__})"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"must be {err['msg'].removeprefix('Input should be ')}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} may hold only letters, digits, '-', '_' and '.', starting with a letter or digit"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "too_short":
        return "must not be empty"
    return err["msg"]
