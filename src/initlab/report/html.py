"""One self-contained HTML file per probe (or per comparison of probes): the verdicts, the table and the
figures embedded as PNG data URIs. No script, no external file or font: it reads offline and can be
attached to a CI run or an issue.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from initlab._io import atomic_text
from initlab.report.columns import PROBE_COLUMNS, ROW_COLOURS, cell_text
from initlab.report.figures import as_results, plot_activations, plot_profile
from initlab.report.table import fmt_number

__all__ = ["to_html", "figure_data_uri"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82em;font-variant-numeric:tabular-nums}
td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}td:first-child,th:first-child,
td.t,th.t{text-align:left}th{background:#f6f6f6}tr.error td:first-child{color:#b00020;font-weight:600}
tr.warning td:first-child{color:#a86400;font-weight:600}
.v{border-left:4px solid #a86400;background:#fff8ec;padding:.5em .9em;margin:.6em 0}
.v.error{border-color:#b00020;background:#fff0f2}.ok{border-left:4px solid #2e7d32;background:#eef8ef;
padding:.5em .9em}.fix{color:#444;margin-top:.3em}code{background:#f3f3f3;padding:0 .2em}
img{max-width:100%}.meta{color:#666;font-size:.9em}
dl.legend{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;font-size:.85em}
dl.legend dt{font-weight:600}dl.legend dd{margin:0}span.error{color:#b00020;font-weight:600}
span.warning{color:#a86400;font-weight:600}
"""


def figure_data_uri(fig: Any) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _table(result: Any) -> str:
    severity: dict[str, str] = {}
    for v in result.verdicts:
        for name in v.layers or ((v.layer,) if v.layer else ()):
            if severity.get(name) != "error":
                severity[name] = v.severity
    rows = ["<tr>" + "".join(f'<th{" class=t" if c.kind == "text" else ""} title="{html.escape(c.meaning)}">'
                             f"{html.escape(c.header)}</th>" for c in PROBE_COLUMNS) + "</tr>"]
    for s in result.layers:
        cls = f' class="{severity[s.name]}"' if s.name in severity else ""
        cells = [f'<td class="t">{html.escape(cell_text(c, getattr(s, c.field)))}</td>' if c.kind == "text" else
                 f"<td>{html.escape(cell_text(c, getattr(s, c.field)))}</td>" for c in PROBE_COLUMNS]
        rows.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return '<table class="probe">' + "\n".join(rows) + "</table>"


def _legend() -> str:
    """What every column and every colour of the table means (from :mod:`initlab.report.columns`)."""
    items = "".join(f"<dt>{html.escape(c.header)}</dt><dd>{html.escape(c.meaning)}</dd>" for c in PROBE_COLUMNS)
    colours = "; ".join(f'<span class="{"error" if c == "red" else "warning"}">{c}</span>: {html.escape(m)}'
                        for c, m in ROW_COLOURS)
    return (f'<h2>Reading the table</h2><dl class="legend">{items}</dl>'
            f'<p class="meta">Layer names in colour: {colours}. Percentages are of the values (zero, sat) or of '
            "the units (dead); '-' means not measured (no gradient reached the point, a layer without "
            "weights, an activation without saturation).</p>")


def _verdicts(result: Any) -> str:
    if not result.verdicts:
        return '<div class="ok">Healthy: no problem found.</div>'
    parts = []
    for v in result.verdicts:
        where = f" at <code>{html.escape(v.layer)}</code>" if v.layer else ""
        parts.append(f'<div class="v {v.severity}"><b>{html.escape(v.severity.upper())} '
                     f"{html.escape(v.code)}</b>{where}: {html.escape(v.message)}"
                     f'<div class="fix">Fix: {html.escape(v.suggestion)}</div></div>')
    return "\n".join(parts)


def _inputs(result: Any) -> str:
    x = result.input
    if x is None:
        return ""
    if not x.is_float:
        return f'<p class="meta">Inputs: {html.escape(x.dtype)} tensor of shape {list(x.shape)}.</p>'
    return (f'<p class="meta">Inputs: shape {list(x.shape)}, mean {fmt_number(x.mean)}, std {fmt_number(x.std)}, '
            f"range [{fmt_number(x.min)}, {fmt_number(x.max)}]; per-feature means {fmt_number(x.feature_mean_min)} "
            f"to {fmt_number(x.feature_mean_max)}, per-feature std median {fmt_number(x.feature_std_median)} "
            f"({x.constant_features} constant features).</p>")


def to_html(results: Any, path: str | Path, *, title: str | None = None, figures: bool = True) -> Path:
    """Write one self-contained HTML report for a ProbeResult, or for ``{label: ProbeResult}`` side by side.

    Contents: for each result the verdicts with their fixes, the input summary and the per-layer table;
    then the activation histograms (one column per result) and the forward/backward std profile.

    Returns:
        the path written.
    """
    items = as_results(results)
    p = Path(path)
    title = title or ("initlab probe report" if len(items) == 1 else "initlab probe comparison")
    body = [f"<h1>{html.escape(title)}</h1>"]
    for label, r in items:
        if label:
            body.append(f"<h2>{html.escape(label)}</h2>")
        loss = "" if r.loss is None or not math.isfinite(r.loss) else f", loss {fmt_number(r.loss, 4)}"
        body.append(f'<p class="meta">Batch {r.batch_size}; backward by {html.escape(r.backward)}{loss}; graph traced '
                    f"by {html.escape(r.method)}; {len(r.layers)} recorded points.</p>")
        body.append(_verdicts(r))
        body.append(_inputs(r))
        body.append(_table(r))
        for note in r.notes:
            body.append(f'<p class="meta">Note: {html.escape(note)}</p>')
    body.append(_legend())
    if figures:
        body.append("<h2>Activation histograms</h2>")
        body.append(f'<img alt="activation histograms" src="{figure_data_uri(plot_activations(results))}">')
        body.append('<p class="meta">One row per layer output, one column per result. Each panel has its own '
                    "x-range (the std printed in it gives the scale); bars are shares of the values, exact zeros "
                    "(half of a ReLU's output) are left out and counted as \"zeros\". The factor under each "
                    "label is the per-layer std factor the depth verdicts fit, rounded as they are.</p>")
        body.append("<h2>Forward and backward profile</h2>")
        body.append(f'<img alt="std per layer" src="{figure_data_uri(plot_profile(results))}">')
        body.append('<p class="meta">Std of each Linear/Conv output (forward) and of the loss gradient at it '
                    "(backward), log scale; every axis spans at least a factor 10, so the few-percent noise of a "
                    "healthy network stays a flat line.</p>")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return atomic_text(p, page, "path")
