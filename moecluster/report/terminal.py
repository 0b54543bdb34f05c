"""A report table fitted to the terminal's width, so that no cell is ever cut off.

At the width it is drawn at, a table is laid out in the first of these that fits: every cell on
one line; each figure's interval on a second line under it ("16,693" over "[16,544, 16,842]");
text columns wrapped to a third of the width (the label never below its longest word); the columns
split over several tables, each led again by the label column. A column still too wide wraps at
spaces and folds only a word longer than itself. Group rows (a setting, a series) become a
heading line above their rows.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from moecluster.report import fmt

if TYPE_CHECKING:
    from moecluster.report.cells import TableData

LABEL_MIN_WIDTH = 24  # a label column never gets narrower than its longest word, up to this
UNBOUNDED = 100_000  # the width a table is measured at to learn its natural width


def _stack(cell: str) -> str:
    """A figure with its interval as two lines: the point, then the interval."""
    parts = fmt.split_interval(cell)
    return f"{parts[0]}\n{parts[1]}" if parts else cell


class FittedTable:
    """`TableData` as rich renders it at the width it is given (see the module's doc)."""

    def __init__(self, data: TableData) -> None:
        self.data = data

    def _label_width(self) -> int:
        d = self.data
        words = [w for row, style in zip(d.rows, d.row_styles) if style != "group" for w in row[0].split()]
        return min(max((len(w) for w in words), default=1), LABEL_MIN_WIDTH)

    def _table(self, columns: Sequence[int], rows: Sequence[tuple[list[str], str]], stacked: bool,
               text_cap: int | None, title: str | None = None) -> Table:
        d = self.data
        t = Table(title=title, title_justify="left", title_style="bold", pad_edge=False)
        for i in columns:
            text = i < d.left or i in d.text_columns
            t.add_column(d.columns[i], justify="left" if text else "right", overflow="fold",
                         min_width=self._label_width() if i == 0 else None, max_width=text_cap if text else None)
        for row, style in rows:
            # cells are plain text: a form like "addmm [in,out]" is no rich markup
            t.add_row(*(Text(_stack(row[i]) if stacked else row[i]) for i in columns), style=style or None)
        return t

    def _rows(self) -> list[tuple[list[str], str]]:
        return [(row, style) for row, style in zip(self.data.rows, self.data.row_styles) if style != "group"]

    def _fits(self, console: Console, options: ConsoleOptions, columns: Sequence[int], stacked: bool,
              text_cap: int | None) -> bool:
        table = self._table(columns, self._rows(), stacked, text_cap)
        natural = console.measure(table, options=options.update_width(UNBOUNDED)).maximum  # unclamped
        return natural <= options.max_width

    def layout(self, console: Console, options: ConsoleOptions) -> tuple[bool, int | None, list[list[int]]]:
        """(intervals on a second line?, the widest a text column may be, the column groups each led by the
        label column)."""
        rest = list(range(1, len(self.data.columns)))
        cap = max(self._label_width(), options.max_width // 3)
        for stacked, text_cap in ((False, None), (True, None), (True, cap)):
            if self._fits(console, options, [0, *rest], stacked, text_cap):
                return stacked, text_cap, [rest]
        chunks: list[list[int]] = []
        for i in rest:
            if chunks and self._fits(console, options, [0, *chunks[-1], i], True, cap):
                chunks[-1].append(i)
            else:
                chunks.append([i])
        return True, cap, chunks

    def _blocks(self) -> Iterator[tuple[str | None, list[tuple[list[str], str]]]]:
        """(group heading or None, its rows), in order."""
        heading: str | None = None
        rows: list[tuple[list[str], str]] = []
        for row, style in zip(self.data.rows, self.data.row_styles):
            if style == "group":
                if rows or heading is not None:
                    yield heading, rows
                heading, rows = row[0], []
            else:
                rows.append((row, style))
        if rows or heading is not None:
            yield heading, rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        d = self.data
        stacked, cap, chunks = self.layout(console, options)
        yield Text(d.title, style="bold")
        for heading, rows in self._blocks():
            if heading is not None:
                yield Text(f"  {heading}", style="italic")
            for n, chunk in enumerate(chunks):
                more = f"  (continued: {', '.join(d.columns[i] for i in chunk)})" if n else None
                yield self._table([0, *chunk], rows, stacked, cap, more)
        for line in d.notes:
            yield Text(line, style="dim")
