"""Server command templates: `{port}`, `{model}`, `{gpus}` in a shell-like line (checked head-side at load,
filled node-side at start). Imports nothing beyond the standard library, so loading a sweep needs no extra."""
from __future__ import annotations

import shlex
import string

PLACEHOLDERS = ("port", "model", "gpus")


def template_problem(template: str) -> str | None:
    """Why `template` is not a usable server command (None where it is): it must split like a shell line,
    name only `{port}`, `{model}`, `{gpus}`, and contain `{port}` (the node picks a free port)."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        return f"does not split like a shell line: {exc}"
    if not words:
        return "is empty"
    names: set[str] = set()
    for word in words:
        try:
            names |= {name for _, name, _, _ in string.Formatter().parse(word) if name is not None}
        except ValueError as exc:
            return f"has a malformed placeholder in {word!r}: {exc} (write {{{{ and }}}} for literal braces)"
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        return f"names unknown placeholder {{{unknown[0]}}} (known: {', '.join('{%s}' % p for p in PLACEHOLDERS)})"
    if "port" not in names:
        return "has no {port}: the node picks a free port and the server must listen on it"
    return None
