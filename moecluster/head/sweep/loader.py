"""Load a sweep file: YAML in, a validated `SweepFile` out, or the problems each on one line.

Errors read `sweep.yaml:12: models[1].num_expert: unknown key (did you mean 'num_experts'?)`:
the file, the line (from the YAML parser's node marks), the key path, what is wrong. Every
problem of the file's values is reported at once, in file order (`SweepError.problems`); a file
that is not a readable YAML mapping stops at its first problem.

The file is hostile until read: it must be a regular file of at most `MAX_SWEEP_BYTES`, UTF-8,
nested at most `MAX_DEPTH` levels, with no tags but YAML's standard ones and at most
`MAX_EXPANDED_NODES` nodes once aliases are expanded. Each is checked before the next step can
hurt (reading a FIFO or /dev/zero, recursing past Python's limit, constructing Python objects,
expanding an alias bomb); values quoted in messages are cut (`shown`).
"""
from __future__ import annotations

import re
import stat
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from moecluster.workloads.registry import WORKLOADS

from moecluster.head.sweep.aliases import expansion_problem
from moecluster.head.sweep.bounds import BOUND_REASONS, DEFAULT_REASON
from moecluster.head.sweep.error import SweepError
from moecluster.head.sweep.schema import FieldProblem, ModelEntry, SweepFile, plugin_context
from moecluster.head.sweep.shown import clip, shown
from moecluster.head.sweep.suggest import did_you_mean

Loc = tuple[str | int, ...]
_TYPE_WORDS = {"int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
               "bool_type": "true or false", "string_type": "a string", "list_type": "a list",
               "model_type": "a mapping of keys", "dict_type": "a mapping of keys",
               "int_from_float": "an integer", "float_parsing": "a number"}
# A sweep file is a few kB; a MiB is hundreds of times that and is parsed in about a second.
MAX_SWEEP_BYTES = 2**20
# A sweep is four levels deep at most (the top mapping, `grids`, a grid, an axis' list); the bound
# stays far below Python's recursion limit, which the YAML composer would otherwise reach.
MAX_DEPTH = 16
# Integers longer than this are no count any sweep key takes (and Python refuses to read 4,300 digits).
MAX_INT_DIGITS = 40
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but that a sweep refuses (a tag, too deep); its problem is the whole message."""


class _SweepLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what a sweep never holds before it can hurt: nesting deeper
    than `MAX_DEPTH` (the composer recurses per level) and tags other than the standard scalar and
    collection ones (the safe constructor would fail on them with a traceback, or build sets,
    bytes and timestamps no key takes)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in _STANDARD_TAGS:
            name = "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag
            raise _Refused(problem=f"tag {clip(name)} is not allowed: a sweep holds plain strings,"
                                       " numbers, booleans, lists and mappings", problem_mark=event.start_mark)
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(problem=f"nested more than {MAX_DEPTH} levels deep; a sweep has at most 4",
                           problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp 2024-13-45
            raise _Refused(problem=f"cannot read the value {shown(getattr(node, 'value', ''))}: {clip(str(exc))}",
                           problem_mark=node.start_mark) from None


def _yaml_error(exc: yaml.YAMLError, path: Path, what: str, source: str) -> SweepError:
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: no mark, a position
        line = source.count("\n", 0, exc.position) + 1
        return SweepError.at(path, None if path.name == "--set" else line, what,
                             f"not valid YAML: unacceptable character #x{exc.character:04x} (a control character);"
                             " a sweep is plain text")
    mark = getattr(exc, "problem_mark", None)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)] if isinstance(exc, yaml.MarkedYAMLError) \
        else [str(exc)]
    text = clip(" ".join(" ".join(str(p) for p in parts if p).split()), 200)
    text = text if isinstance(exc, _Refused) else f"not valid YAML: {text}"
    if isinstance(path, Path) and path.name == "--set":
        return SweepError.at(path, None, what, text)
    column = mark.column + 1 if mark and isinstance(exc, _Refused) else None  # a refused tag's own place
    return SweepError.at(path, mark.line + 1 if mark else None, what, text, column=column)


def read_yaml(text: str, path: Path, what: str = "") -> tuple[yaml.Node | None, Any]:
    """The composed tree and the constructed value of one YAML document, or SweepError naming the
    first thing that makes it unsafe or unreadable (see the module's doc). `what` names a `--set`
    key in messages."""
    if len(text) > MAX_SWEEP_BYTES:
        raise SweepError.at(path, None, what, f"{len(text):,} characters, more than the {MAX_SWEEP_BYTES:,} a sweep"
                            " may have")
    loader = None
    try:
        loader = _SweepLoader(text)  # refuses control characters at once
        root = loader.get_single_node()
        problem = expansion_problem(root, max_depth=MAX_DEPTH) if root is not None else None
        if problem:
            raise SweepError.at(path, None, what, problem)
        _check_scalars(root, path, what)
        return root, (loader.construct_document(root) if root is not None else None)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path, what, text) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_scalars(root: yaml.Node | None, path: Path, what: str) -> None:
    """SweepError at the first key that is a list or mapping (no sweep key is; Python could not hash
    it), or integer too long to be any count (Python refuses to read 4,300 digits). `what` names a
    `--set` key, whose value has no line of its own."""
    def line_of(node: yaml.Node) -> int | None:
        return None if path.name == "--set" else node.start_mark.line + 1

    stack = [root] if root is not None else []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_DIGITS:
                raise SweepError.at(path, line_of(node), what, f"an integer of {len(node.value):,} digits"
                                    f" is no count a sweep takes (at most {MAX_INT_DIGITS})")
        elif isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise SweepError.at(path, line_of(key), what, "a key must be a plain name, not a list"
                                        " or mapping")
            stack.extend(v for kv in node.value for v in kv)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def load_value(text: str, key: str) -> Any:
    """One `--set KEY=VALUE` value, read as YAML with the checks of a sweep file."""
    return read_yaml(text, Path("--set"), key)[1]


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepFile:
    """Read, parse and validate a sweep file (see `schema.SweepFile`).

    Only a regular file of at most `MAX_SWEEP_BYTES` is read (a FIFO or /dev/zero would block or
    never end); it must be UTF-8. `overrides` replace top-level keys after parsing (the CLI's
    `--set key=value`); errors in them are reported as `--set key` rather than by line.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SweepError.at(path, None, "", "no such file") from None
    except OSError as exc:
        raise SweepError.at(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SweepError.at(path, None, "", "is a directory; give a sweep file")
    if not stat.S_ISREG(info.st_mode):
        raise SweepError.at(path, None, "", "is not a regular file (a device, FIFO or socket); give a sweep file")
    too_big = f"more than the {MAX_SWEEP_BYTES:,} bytes a sweep file may have (a sweep is a few kB)"
    if info.st_size > MAX_SWEEP_BYTES:
        raise SweepError.at(path, None, "", f"{info.st_size:,} bytes, {too_big}")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SWEEP_BYTES + 1)
    except OSError as exc:
        raise SweepError.at(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SWEEP_BYTES:
        raise SweepError.at(path, None, "", f"still growing past {MAX_SWEEP_BYTES:,} bytes, {too_big}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SweepError.at(path, None, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start:,});"
                            " a sweep is a YAML text file") from None
    return parse_sweep(text, path, overrides)


def parse_sweep(text: str, path: Path = Path("<sweep>"), overrides: dict[str, Any] | None = None) -> SweepFile:
    """Validate sweep `text`; `path` is only used in messages and as the default name."""
    root, data = read_yaml(text, path)
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        what = "empty" if root is None else f"a YAML {type(data).__name__}"
        raise SweepError.at(path, root.start_mark.line + 1 if root else None, "",
                            f"not a sweep: the file is {what}; it must be a YAML mapping (name:, models:, impl:, ...)")
    found: list[SweepError] = []
    lines = _line_map(root, (), path, found)
    data.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem).strip("-.")[:80] or "sweep")
    for key, value in (overrides or {}).items():
        data[key] = value
        for loc in [loc for loc in lines if loc[:1] == (key,)]:
            del lines[loc]
    named = data.get("workload")
    workload = named if isinstance(named, str) else ""
    _resolve_prompt_file(data, path)
    try:
        sweep = SweepFile.model_validate(data, context=plugin_context(WORKLOADS, workload))
    except ValidationError as exc:
        found += _all_errors(exc, data, lines, path, set(overrides or ()))
    if found:
        raise SweepError.many(found)
    return sweep


def _resolve_prompt_file(data: dict[str, Any], path: Path) -> None:
    """A serve sweep's relative `serve.prompts.file` is read from the sweep file's directory: made absolute
    here, so the run directory's resolved sweep names the same file."""
    serve = data.get("serve")
    prompts = serve.get("prompts") if isinstance(serve, dict) else None
    if isinstance(prompts, dict) and isinstance(prompts.get("file"), str) and prompts["file"]:
        file = Path(prompts["file"]).expanduser()
        if not file.is_absolute():
            prompts["file"] = str((path.parent / file).absolute())


def _line_map(node: yaml.Node, loc: Loc, path: Path, found: list[SweepError]) -> dict[Loc, int]:
    """1-based line of every key path in the YAML tree (its keys are scalars, `_check_scalars`); a
    duplicate key is added to `found` (the rest of the file is still mapped and validated)."""
    out = {loc: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            line = key.start_mark.line + 1
            name = key.value
            if name in seen:
                found.append(SweepError.at(path, line, _render(loc + (name,)),
                                           "duplicate key (YAML would silently keep the last one)"))
            seen.add(name)
            out.update(_line_map(value, loc + (name,), path, found))
            out[loc + (name,)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_line_map(item, loc + (i,), path, found))
    return out


def _all_errors(exc: ValidationError, data: Any, lines: dict[Loc, int], path: Path,
                overridden: set[str]) -> list[SweepError]:
    """One SweepError per key pydantic refused (the first error of each), with its line."""
    found: dict[Loc, SweepError] = {}
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldProblem):
            loc += ctx_error.loc
        loc = _as_written(loc, data)
        if loc in found:
            continue
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        if loc and loc[0] in overridden:
            found[loc] = SweepError.at(Path("--set"), None, _render(loc), _message(err, loc))
        else:
            found[loc] = SweepError.at(path, line or None, _render(loc), _message(err, loc))
    return list(found.values())


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
    """`models[1].top_k`; a key of the user's is cut (`clip`)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{clip(str(part))}" if text else clip(str(part)))
    return text


def _owner(loc: Loc) -> type[BaseModel]:
    """The schema model a key path ends in (for the keys `did_you_mean` offers)."""
    if len(loc) >= 2 and loc[0] == "models":
        return ModelEntry
    if loc[:1] == ("serve",):
        from moecluster.head.sweep.serve_schema import owner

        return owner(loc[1:])
    return SweepFile


def _message(err: Mapping[str, Any], loc: Loc) -> str:
    """What is wrong with the value at `loc`, quoting it cut to `shown`'s length."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = clip(str(loc[-1]))
        return f"unknown key{did_you_mean(key, _owner(loc[:-1]).model_fields)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        hint = did_you_mean(clip(value), choices) if isinstance(value, str) else ""
        return f"{shown(value)} is not one of {', '.join(choices)}{hint}"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {shown(value)} ({type(value).__name__}){_text_number_hint(value)}"
    if kind in ("value_error", "assertion_error"):
        return clip(str(ctx.get("error", err["msg"])), 240)
    if kind in ("less_than", "less_than_equal"):
        field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
        bound = ctx.get("le", ctx.get("lt"))
        limit = f"{bound:,}" if isinstance(bound, int) else f"{bound:,g}"
        return (f"{shown(value)} is more than {limit}, the most it may be"
                f" ({BOUND_REASONS.get(field, DEFAULT_REASON)})")
    if kind in ("greater_than", "greater_than_equal"):
        return f"must be {err['msg'].removeprefix('Input should be ')}, got {shown(value)}"
    if kind == "string_pattern_mismatch":
        return f"{shown(value)} may hold only letters, digits, '-', '_' and '.', starting with a letter or digit"
    if kind == "string_too_long":
        return f"{shown(value)} is longer than {ctx.get('max_length')} characters"
    if kind == "finite_number":
        return f"must be a finite number, got {shown(value)}"
    if kind == "too_short":
        return "must not be empty"
    return clip(str(err["msg"]), 240)


def _text_number_hint(value: Any) -> str:
    """A hint when YAML read a number as text: YAML 1.1 takes `1e9` (no dot, no sign) for a string."""
    if not isinstance(value, str) or len(value) > 40:
        return ""
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return ""
    return f"; YAML reads {value} as text (write {number:.0f})" if number.is_integer() and abs(number) < 1e18 \
        else f"; YAML reads {value} as text"
