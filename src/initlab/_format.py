"""The text formatting of everything initlab prints: one rounding rule for tables, verdicts, figure titles
and HTML, and the aligned text tables (:func:`render`, :class:`Column`; public as ``initlab.report.table``).

A leaf module (it imports nothing from initlab), so data types that print themselves (the health
verdicts, ``Prediction.table``, ``Comparison.table``) and the renderers (``initlab.report``) share it
without the data depending on its rendering.

* :func:`fmt_number`: 3 significant digits, scientific when very small or large;
* :func:`fmt_percent`: a fraction as a whole percentage, ``0`` printed ``0%`` like any other value;
* :func:`fmt_factor`: a multiplicative factor as ``x0.71``: 2 decimals (the precision a per-layer
  factor is known to over a handful of layers), 3 significant digits once it is 10 or more.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["fmt_number", "fmt_percent", "fmt_factor", "FACTOR_DECIMALS", "Column", "render", "style", "use_color",
           "visible_len", "STYLES"]

FACTOR_DECIMALS = 2


def fmt_number(x: Any, digits: int = 3) -> str:
    """A compact number: ``digits`` significant digits, scientific when very small or large; '-' for None.

    >>> fmt_number(0.000123456), fmt_number(12345.6), fmt_number(None), fmt_number(float("nan")), fmt_number(7)
    ('0.000123', '1.23e+04', '-', 'nan', '7')
    """
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def fmt_percent(x: Any, digits: int = 0) -> str:
    """A fraction as a percentage ('-' for None or NaN): ``fmt_percent(0.256) == '26%'``, ``fmt_percent(0) == '0%'``.

    >>> fmt_percent(0.256), fmt_percent(0), fmt_percent(None), fmt_percent(0.0004, 1)
    ('26%', '0%', '-', '0.0%')
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * float(x):.{digits}f}%"


def fmt_factor(x: Any) -> str:
    """A per-layer (or any multiplicative) factor as ``x0.71``: 2 decimals below 10, 3 significant digits
    above; '-' for None, ``xnan`` / ``xinf`` when not finite.

    >>> fmt_factor(0.7071), fmt_factor(1.0), fmt_factor(1.98), fmt_factor(123.4), fmt_factor(None)
    ('x0.71', 'x1.00', 'x1.98', 'x123', '-')
    """
    if x is None:
        return "-"
    v = float(x)
    if not math.isfinite(v):
        return f"x{v}"
    if abs(v) >= 10:
        return f"x{v:.3g}"
    return f"x{v:.{FACTOR_DECIMALS}f}"


# --------------------------------------------------------------------------------------------------
# Text tables

STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35",
          "cyan": "36"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def use_color(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stdout) is a terminal and the environment does not forbid colour."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def style(text: str, *styles: str | None, enabled: bool = True) -> str:
    """``text`` wrapped in ANSI codes for ``styles`` (names from ``STYLES``); unchanged when disabled."""
    unknown = [s for s in styles if s and s not in STYLES]
    if unknown:
        raise ValueError(f"style must be one of {sorted(STYLES)}; got {unknown[0]!r}")
    codes = [STYLES[s] for s in styles if s]
    if not enabled or not codes:
        return text
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"


def visible_len(text: str) -> int:
    """Length of ``text`` on screen (ANSI codes do not count)."""
    return len(_ANSI.sub("", text))


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Args:
        key: dict key / attribute name (str), sequence index (int), or a function of the row.
        header: column title (default: the key).
        fmt: a format spec (``".3g"``), a function of the value returning text, or None (numbers through
            :func:`fmt_number`, the rest through ``str``).
        align: "<", ">" or "^"; default: numbers right-aligned, text left-aligned.
        color: a function ``(value, row) -> style name or None`` choosing the cell's colour.
    """

    key: str | int | Callable[[Any], Any]
    header: str | None = None
    fmt: str | Callable[[Any], str] | None = None
    align: str | None = None
    color: Callable[[Any, Any], str | None] | None = None

    def value(self, row: Any) -> Any:
        if callable(self.key):
            return self.key(row)
        if isinstance(row, Mapping):
            return row.get(self.key)
        if isinstance(self.key, int):
            return row[self.key]
        if isinstance(row, Sequence) and not isinstance(row, str):
            raise TypeError(f"column key {self.key!r} needs dict or object rows; got a sequence row")
        return getattr(row, self.key, None)

    def text(self, value: Any) -> str:
        if callable(self.fmt):
            return self.fmt(value)
        if isinstance(self.fmt, str):
            return "-" if value is None else format(value, self.fmt)
        return fmt_number(value) if isinstance(value, (int, float)) or value is None else str(value)

    @property
    def title(self) -> str:
        if self.header is not None:
            return self.header
        return self.key if isinstance(self.key, str) else str(self.key) if isinstance(self.key, int) else ""


def render(rows: Sequence[Any], columns: Sequence[Column | str] | None = None, *, title: str | None = None,
           footer: str | None = None, color: bool | None = None, row_style: Callable[[Any], str | None] | None = None,
           separator: str = "  ") -> str:
    """An aligned text table.

    Args:
        rows: dicts, sequences or objects (one per row).
        columns: :class:`Column` s or keys; default: the keys of the first dict row (or positions).
        title, footer: lines printed above / below the table.
        color: use ANSI colour (header bold, per-cell ``Column.color``, ``row_style``); None = :func:`use_color`.
        row_style: a function ``row -> style name or None`` colouring a whole row.

    Raises:
        ValueError: ``columns`` missing for rows whose keys cannot be guessed.
    """
    rows = list(rows)
    if columns is None:
        if rows and isinstance(rows[0], Mapping):
            columns = list(rows[0].keys())
        elif rows and isinstance(rows[0], Sequence) and not isinstance(rows[0], str):
            columns = [Column(i, header=str(i)) for i in range(len(rows[0]))]
        else:
            raise ValueError("columns must be given for rows that are neither dicts nor sequences")
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    enabled = use_color() if color is None else bool(color)
    cells: list[list[str]] = []
    raw: list[list[Any]] = []
    for row in rows:
        values = [c.value(row) for c in cols]
        raw.append(values)
        cells.append([c.text(v) for c, v in zip(cols, values)])
    widths = [max([visible_len(c.title)] + [visible_len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in raw) and bool(raw) for i in range(len(cols))]

    def pad(text: str, width: int, align: str) -> str:
        gap = width - visible_len(text)
        if align == ">":
            return " " * gap + text
        if align == "^":
            return " " * (gap // 2) + text + " " * (gap - gap // 2)
        return text + " " * gap

    aligns = [c.align or (">" if numeric[i] else "<") for i, c in enumerate(cols)]
    lines = []
    if title:
        lines.append(style(title, "bold", enabled=enabled))
    header = separator.join(pad(c.title, w, "<" if a == "<" else a) for c, w, a in zip(cols, widths, aligns))
    lines.append(style(header.rstrip(), "bold", enabled=enabled))
    lines.append(separator.join("-" * w for w in widths))
    for row, values, texts in zip(rows, raw, cells):
        rs = row_style(row) if (row_style and enabled) else None
        parts = []
        for c, v, txt, w, a in zip(cols, values, texts, widths, aligns):
            cs = c.color(v, row) if (c.color and enabled) else None
            parts.append(pad(style(txt, cs or rs, enabled=enabled), w, a))
        lines.append(separator.join(parts).rstrip())
    if footer:
        lines.append(footer)
    return "\n".join(lines)
