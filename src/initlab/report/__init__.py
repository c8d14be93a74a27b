"""Reports shared by initlab's tools: terminal tables (``report.table``), what each probe column means
(``report.columns``: one legend for the table, the HTML and ``initlab probe --help``), matplotlib figures
(``report.figures``: ``plot_activations``, ``plot_profile``, ``plot_monitor``) and self-contained HTML
(``report.html``). matplotlib is imported only when a figure is drawn.

Rendering reads data (``initlab.probing.result``, ``initlab.probing.stats``, ``initlab.theory``) and never
the other way round; numbers are rounded by one rule everywhere (``fmt_number``, ``fmt_percent``,
``fmt_factor`` from the leaf ``initlab._format``).
"""

from initlab.report.table import Column, fmt_factor, fmt_number, fmt_percent, render, style, use_color

__all__ = ["Column", "render", "fmt_number", "fmt_percent", "fmt_factor", "style", "use_color", "plot_activations",
           "plot_profile", "plot_monitor", "to_html"]


def __getattr__(name: str):
    if name in ("plot_activations", "plot_profile", "plot_monitor"):
        from initlab.report import figures

        return getattr(figures, name)
    if name == "to_html":
        from initlab.report.html import to_html

        return to_html
    raise AttributeError(f"module 'initlab.report' has no attribute {name!r}")
