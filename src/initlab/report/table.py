"""Terminal tables shared by every initlab report (probe, init_model, LSUV, theory, experiments).

One function, :func:`render`, turns rows (dicts, sequences or objects) into an aligned plain-text
table; :class:`Column` says what each column shows and how. Colour (ANSI) is used only where it helps
and only when the output is a terminal that wants it (:func:`use_color`: a TTY, ``NO_COLOR`` unset;
``FORCE_COLOR`` forces it), so tables stay clean in logs, files and tests.

The code lives in :mod:`initlab._format` (a leaf that data types may import without depending on
``initlab.report``); this module is its public name.

>>> print(render([{"layer": "fc1", "std": 0.70712}, {"layer": "fc2", "std": 1e-7}], ["layer", "std"]))
layer    std
-----  -----
fc1    0.707
fc2    1e-07
"""

from __future__ import annotations

from initlab._format import (
    STYLES,
    Column,
    fmt_factor,
    fmt_number,
    fmt_percent,
    render,
    style,
    use_color,
    visible_len,
)

__all__ = ["Column", "render", "fmt_number", "fmt_percent", "fmt_factor", "style", "use_color", "visible_len", "STYLES"]
