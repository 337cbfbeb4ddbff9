"""Markdown tables of the studies' reports."""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["render_table"]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> str:
    """A Markdown table: a header row, the alignment row, one row per entry of ``rows``.

    Args:
        headers: the column titles.
        rows: the cells of each row, already formatted, one per column.
        align: one letter per column, ``l`` (text, left) or ``r`` (numbers, right).

    Raises:
        ValueError: ``align`` does not give one letter ``l`` / ``r`` per column.
    """
    if len(align) != len(headers) or set(align) - {"l", "r"}:
        raise ValueError(f"align must give 'l' or 'r' for each of the {len(headers)} columns, got {align!r}")
    lines = ["| " + " | ".join(headers) + " |", "|" + "".join("---|" if a == "l" else "---:|" for a in align)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
