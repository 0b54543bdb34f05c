"""A report table as plain cells (`TableData`): the one type every table of the report is built as, rendered
by rich in the terminal (`terminal.FittedTable`, fitted to the width it is drawn at) and as HTML (`html.table_html`).

Kept apart from `tables` so that the sections built in other modules (`llm`, `serve`, `ep`) import the
type without importing `tables`, which imports them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from moecluster.report.aggregate import TaskStats

from moecluster.report import fmt

COVERS = "95 % CI covers:"


@dataclass
class TableData:
    """A titled table of formatted cells; the first `left` columns are text (left-aligned).

    `footnotes` are said once under the table; `note(text)` returns the mark of one for a cell.
    """

    title: str
    columns: list[str]
    left: int = 1
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""
    row_styles: list[str] = field(default_factory=list)
    text_columns: tuple[int, ...] = ()  # further text columns beyond the first `left`
    footnotes: list[str] = field(default_factory=list)
    covers: str = ""  # what every interval of the table covers, when all rows' is the same

    def add_row(self, *cells: str, style: str = "") -> None:
        self.rows.append([str(c) for c in cells])
        self.row_styles.append(style)

    def group(self, title: str) -> None:
        """A row spanning the table that heads the rows after it (style "group")."""
        self.rows.append([title] + [""] * (len(self.columns) - 1))
        self.row_styles.append("group")

    def note(self, text: str) -> str:
        """The footnote mark for `text` ("¹"), numbered in order of first use; each text is listed once."""
        if text not in self.footnotes:
            self.footnotes.append(text)
        return fmt.superscript(self.footnotes.index(text) + 1)

    def marks(self, texts: list[str] | tuple[str, ...]) -> str:
        """The marks of several footnotes ("¹ ³"), "" for none."""
        return " ".join(self.note(t) for t in texts)

    def covered(self, texts: Iterable[str]) -> Callable[[str], str]:
        """Say what the table's intervals cover, given every row's (`TaskStats.ci_covers`): once under the
        table when all are the same, else as a footnote per row. Returns a row's mark ("" when said once)."""
        distinct = list(dict.fromkeys(texts))
        if len(distinct) == 1:
            self.covers = distinct[0]
            return lambda text: ""
        return lambda text: self.note(f"{COVERS} {text}")

    @property
    def notes(self) -> list[str]:
        """What goes under the table: the caption, what its intervals cover, then each footnote after its mark."""
        return ([self.caption] if self.caption else []) + ([f"{COVERS} {self.covers}."] if self.covers else []) + [
            f"{fmt.superscript(i)} {text}" for i, text in enumerate(self.footnotes, 1)]


def mean_over(stats: Iterable[TaskStats], windows: str = "windows") -> str:
    """What the tables' means are over: "replicates" where any task was measured by several processes."""
    return "replicates (each over its windows)" if any(s.replicates for s in stats) else windows
