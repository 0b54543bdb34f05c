"""Shared bits of the scripts that write docs' result tables from committed report CSVs (`study_tables.py`,
`ep_table.py`, `llm_table.py`): a ratio with its interval as the pages print it, and the command line."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path


def ratio_text(row: Mapping[str, str], name: str, *, estimate: str | None = None) -> str:
    """`name` of a CSV row with its 95 % interval ("2.51 [2.46, 2.56]"), † where it contains 1, and the
    analytic estimate in parentheses where `estimate` names its column; "—" where the row lacks it."""
    if not row.get(name):
        return "—"
    mean, lo, hi = (float(row[k]) for k in (name, f"{name}_lo", f"{name}_hi"))
    dagger = " †" if lo <= 1 <= hi else ""
    est = f" ({float(row[estimate]):.2f})" if estimate and row.get(estimate) else ""
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]{dagger}{est}"


def main(table: Callable[[Path], str], folders: list[str]) -> None:
    """Print `table` of each report folder, a blank line after each."""
    for folder in folders:
        print(table(Path(folder)))
        print()


def markdown(header: str, align: str, rows: list[list[str]]) -> str:
    """A Markdown table: its header line, the alignment line, and one line per row of cells."""
    return "\n".join([header, align, *(f"| {' | '.join(cells)} |" for cells in rows)])
