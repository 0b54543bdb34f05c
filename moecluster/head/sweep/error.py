"""A refused sweep: one line per problem, naming the file, line and key where known.

Kept apart from the loader so that the workload plug-ins (`moecluster.workloads`), which refuse grid points
while they expand a sweep, raise it without importing the loader (which imports their registry).
"""
from __future__ import annotations

from pathlib import Path

from moecluster.head.sweep.shown import clip

# One problem's line: a path, a key path and a message with values cut to `shown`'s length fit.
MAX_MESSAGE_CHARS = 400
# Problems listed for one file; the rest are counted.
MAX_PROBLEMS_SHOWN = 20


class SweepError(ValueError):
    """A bad sweep. The message is one line naming the file, line and key where known; a file with
    several problems holds each as one line in `problems` (file order), the message names the first
    and counts the others.

    (Not the CLI's `InputError`: importing that would import the whole CLI; `submit`
    turns this into one.)
    """

    def __init__(self, message: str, path: Path | None = None, line: int | None = None, key: str = "",
                 problems: tuple[str, ...] = ()) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)  # the last guard: each part quoted is cut already
        super().__init__(message)
        self.path, self.line, self.key = path, line, key
        self.problems = problems or (message,)

    @classmethod
    def at(cls, path: Path, line: int | None, key: str, message: str, column: int | None = None) -> "SweepError":
        where = clip(str(path), 160) + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        return cls(f"{where}: {key + ': ' if key else ''}{message}", path, line, key)

    @classmethod
    def many(cls, found: list["SweepError"]) -> "SweepError":
        """One error holding every problem of `found` (at least one), ordered by line."""
        found = sorted(found, key=lambda e: e.line or 0)
        first, more = found[0], len(found) - 1
        message = str(first) + (f" (and {more} more problem{'s' if more > 1 else ''} in this sweep)" if more else "")
        return cls(message, first.path, first.line, first.key, problems=tuple(str(e) for e in found))

    def report_lines(self, limit: int = MAX_PROBLEMS_SHOWN) -> list[str]:
        """The problems to print, one per line: all of them, or the first `limit` and a count of the rest."""
        if len(self.problems) <= limit:
            return list(self.problems)
        where = clip(str(self.path), 160) if self.path else "the sweep"
        hidden = len(self.problems) - limit
        return [*self.problems[:limit], f"{where}: {hidden} more problems not shown ({len(self.problems)} in all)"]
