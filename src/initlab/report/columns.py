"""What each column of a probe table means: one list read by the terminal table
(:meth:`initlab.ProbeResult.table`), the HTML report's legend and ``initlab probe --help``, so the three
never disagree.

>>> [c.header for c in PROBE_COLUMNS][:5]
['layer', 'kind', 'act', 'mean', 'std']
>>> describe("sat")
'logistic / tanh only: fraction saturated (pre-activations outside [-4, 4], or outputs within 0.01 of the bounds)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from initlab._format import fmt_number, fmt_percent

__all__ = ["ProbeColumn", "PROBE_COLUMNS", "THEORY_COLUMNS", "ROW_COLOURS", "describe", "legend_text", "cell_text"]


@dataclass(frozen=True)
class ProbeColumn:
    """One column: its header, the :class:`~initlab.probing.stats.LayerStats` field it reads, its kind
    ("text", "number", "percent", "count") and a one-line meaning."""

    header: str
    field: str
    kind: str
    meaning: str


PROBE_COLUMNS: tuple[ProbeColumn, ...] = (
    ProbeColumn("layer", "name", "text", "the recorded point (module name; 'fc1:relu' = a functional activation "
                "applied to fc1's output), in execution order"),
    ProbeColumn("kind", "kind", "text", "linear, conv, norm, attention, ... or activation"),
    ProbeColumn("act", "activation", "text", "the activation applied to (or computed at) this output"),
    ProbeColumn("mean", "act_mean", "number", "mean of the output over every element of the batch"),
    ProbeColumn("std", "act_std", "number", "standard deviation of the output (the signal's scale)"),
    ProbeColumn("min", "act_min", "number", "smallest output value"),
    ProbeColumn("max", "act_max", "number", "largest output value"),
    ProbeColumn("zero", "frac_zero", "percent", "fraction of output values exactly 0 (about 50% after a ReLU)"),
    ProbeColumn("dead", "frac_dead_units", "percent", "fraction of units zero for the whole batch (ReLU family: "
                "never positive); such units get no gradient"),
    ProbeColumn("sat", "frac_saturated", "percent", "logistic / tanh only: fraction saturated (pre-activations "
                "outside [-4, 4], or outputs within 0.01 of the bounds)"),
    ProbeColumn("sym", "symmetric_units", "count", "units identical to another unit (same weights, or the same "
                "output on every input of the batch): a symmetry training never breaks"),
    ProbeColumn("grad std", "grad_std", "number", "std of the gradient of the loss with respect to this output"),
    ProbeColumn("w std", "weight_std", "number", "std of the layer's weight"),
    ProbeColumn("gw/w", "grad_weight_ratio", "number", "std of the weight's gradient / std of the weight: the "
                "relative size of one SGD step at learning rate 1"),
)

THEORY_COLUMNS: tuple[ProbeColumn, ...] = (
    ProbeColumn("std pred", "", "number", "the output std predicted by initlab.theory.propagate"),
    ProbeColumn("grad pred", "", "number", "the gradient std predicted by initlab.theory.propagate"),
)

ROW_COLOURS: tuple[tuple[str, str], ...] = (
    ("red", "the layer is named by an error verdict"),
    ("yellow", "the layer is named by a warning verdict"),
)


def cell_text(column: ProbeColumn, value: Any) -> str:
    """The text of one cell, the same in the terminal and in HTML: percentages through
    :func:`~initlab._format.fmt_percent` (``0%``, never a bare ``0``), numbers through
    :func:`~initlab._format.fmt_number`, a count of 0 and a missing value as ``-``.

    >>> sat = PROBE_COLUMNS[9]
    >>> cell_text(sat, 0.0), cell_text(sat, 0.25), cell_text(sat, None)
    ('0%', '25%', '-')
    """
    if column.kind == "percent":
        return fmt_percent(value)
    if column.kind == "count":
        return str(value) if value else "-"
    if column.kind == "text":
        return "-" if value is None or value == "" else str(value)
    return fmt_number(value)


def describe(header: str) -> str:
    """The meaning of the column titled ``header``."""
    for c in PROBE_COLUMNS + THEORY_COLUMNS:
        if c.header == header:
            return c.meaning
    raise ValueError(f"header must be one of {[c.header for c in PROBE_COLUMNS + THEORY_COLUMNS]}; got {header!r}")


def legend_text(width: int = 100) -> str:
    """The columns and the row colours as plain text (``initlab probe --help``)."""
    import textwrap

    pad = max(len(c.header) for c in PROBE_COLUMNS + THEORY_COLUMNS) + 2
    lines = ["columns of the tables (<init>.txt, report.html):"]
    for c in PROBE_COLUMNS + THEORY_COLUMNS:
        lines += textwrap.wrap(c.meaning, width, initial_indent=f"  {c.header:<{pad}}",
                               subsequent_indent=" " * (pad + 2))
    lines.append("  percentages are of the values (zero, sat) or of the units (dead); '-' = not measured")
    lines.append("layer names in colour (terminal with colour, HTML):")
    lines += [f"  {c:<{pad}}{m}" for c, m in ROW_COLOURS]
    return "\n".join(lines)
