"""How a table (tuner.tables) is written: for a terminal, for a pipe, as csv, json or markdown.

- `terminal`: fits the width without cutting a cell. Columns are kept in order of importance
  up to the first that does not fit; the ones left out are named under the table. A trial
  pruned at a milestone reads `PRUNED@1`; any other reason is a numbered footnote
  (`FAIL[1]`), told in full.
- `plain`: the same cells and footnotes, every column, no colour, aligned with spaces; what a
  pipe gets (`study show NAME | grep PRUNED`).
- `csv`, `json`: every value raw (full precision, the full reason), keys as column names.
- `markdown`: a pipe table with footnotes, to paste into notes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from datetime import datetime
from typing import Any

from rich.text import Text

from tuner.errors import ConfigError
from tuner.records import short_state
from tuner.tables import Column, Table

FORMATS = ("table", "csv", "json", "markdown")
GAP = 2
"""Spaces between two columns."""
STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan"}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: one of {', '.join(FORMATS)}")
    return fmt


def column_name(column: Column) -> str:
    """A column's name in csv/json and in `--columns`: a param by its own name."""
    return column.key.removeprefix("param.")


# ---------------------------------------------------------------- cells and footnotes


def cells(table: Table) -> tuple[list[list[str]], list[str]]:
    """Every cell as text, and the footnotes its state cells point to.

    When the table shows no reason column, a state whose reason is not said by the short
    state gets a marker `[n]`; equal reasons share one footnote.
    """
    keys = [c.key for c in table.columns]
    notes: list[str] = []
    out = []
    for row in table.rows:
        line = []
        for column in table.columns:
            if column.key == "state" and "reason" in row:
                text, note = short_state(str(row["state"]), str(row.get("reason") or ""))
                if note and "reason" not in keys:
                    if note not in notes:
                        notes.append(note)
                    text += f"[{notes.index(note) + 1}]"
            else:
                text = column.text(row.get(column.key))
            line.append(text)
        out.append(line)
    return out, notes


def _widths(table: Table, grid: list[list[str]]) -> list[int]:
    return [
        max([len(c.header)] + [len(line[i]) for line in grid]) for i, c in enumerate(table.columns)
    ]


def fit(widths: list[int], width: int) -> list[int]:
    """Indices of the columns that fit in `width` characters: the first ones, in order of
    importance, up to the first that does not fit (at least the first column)."""
    kept: list[int] = []
    used = 0
    for i, w in enumerate(widths):
        used += w + (GAP if kept else 0)
        if used > width and kept:
            break
        kept.append(i)
    return kept


def _align(text: str, width: int, column: Column) -> str:
    return text.rjust(width) if column.numeric else text.ljust(width)


def _footnotes(notes: list[str], width: int | None) -> list[str]:
    lines = []
    for i, note in enumerate(notes, 1):
        head = f"[{i}] "
        if width is None:
            lines.append(head + note)
        else:
            lines += textwrap.wrap(
                head + note, width, subsequent_indent=" " * len(head), break_on_hyphens=False
            )
    return lines


# ---------------------------------------------------------------- terminal and plain


def plain(table: Table) -> str:
    """Every column aligned with spaces, no colour, footnotes below: what a pipe gets."""
    grid, notes = cells(table)
    widths = _widths(table, grid)
    lines = [table.title, ""] if table.title else []
    for line in [[c.header for c in table.columns], *grid]:
        parts = [
            _align(t, widths[i], c)
            for i, (t, c) in enumerate(zip(line, table.columns, strict=True))
        ]
        lines.append((" " * GAP).join(parts).rstrip())
    lines += _footnotes(notes, None)
    return "\n".join(lines) + "\n"


def terminal(table: Table, width: int) -> Text:
    """The table in `width` columns, coloured; no cell is ever cut."""
    grid, notes = cells(table)
    widths = _widths(table, grid)
    kept = fit(widths, width)
    text = Text()
    if table.title:
        text.append(textwrap.shorten(table.title, width, placeholder="…"), "bold")
        text.append("\n")
    header = (" " * GAP).join(
        _align(table.columns[i].header, widths[i], table.columns[i]) for i in kept
    )
    text.append(header.rstrip(), "bold")
    text.append("\n")
    states = next((i for i, c in enumerate(table.columns) if c.key == "state"), -1)
    for row, line in zip(table.rows, grid, strict=True):
        for n, i in enumerate(kept):
            column = table.columns[i]
            cell = _align(line[i], widths[i], column)
            if n == len(kept) - 1:
                cell = cell.rstrip()
            style = STATE_STYLE.get(str(row.get("state")), "") if i == states else ""
            text.append(cell, style)
            if n < len(kept) - 1:
                text.append(" " * GAP)
        text.append("\n")
    hidden = [column_name(c) for i, c in enumerate(table.columns) if i not in kept]
    if hidden:
        said = (
            f"not shown in {width} columns: {', '.join(hidden)} "
            "(pick with --columns; --format csv has all)"
        )
        text.append("\n".join(textwrap.wrap(said, width)) + "\n", "dim")
    for line in _footnotes(notes, width):
        text.append(line + "\n")
    text.rstrip()
    return text


# ---------------------------------------------------------------- data formats


def _raw(value: Any) -> Any:
    """A JSON-safe raw value: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value


def to_json(table: Table) -> str:
    rows = [{column_name(c): _raw(row.get(c.key)) for c in table.columns} for row in table.rows]
    return json.dumps(rows, indent=2) + "\n"


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column_name(c) for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_value(row.get(c.key)) for c in table.columns])
    return buffer.getvalue()


def _csv_value(value: Any) -> str:
    value = _raw(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_markdown(table: Table) -> str:
    grid, notes = cells(table)

    def row(parts: list[str]) -> str:
        return "| " + " | ".join(p.replace("|", "\\|") for p in parts) + " |"

    lines = [f"**{table.title}**", ""] if table.title else []
    lines.append(row([c.header or " " for c in table.columns]))
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in table.columns) + "|")
    lines += [row(line) for line in grid]
    if notes:
        lines += ["", *(f"{line}  " for line in _footnotes(notes, None))]
    return "\n".join(lines) + "\n"


def render_text(table: Table, fmt: str) -> str:
    """Any format but the terminal table, as text (`table` gives the plain layout)."""
    return {"table": plain, "csv": to_csv, "json": to_json, "markdown": to_markdown}[fmt](table)
