"""Measuring signal propagation: ``initlab.probe`` (one batch, one pass), health verdicts, ``Monitor``.

* ``probing.probe``: :func:`initlab.probe` and :class:`ProbeResult` (per-layer statistics and verdicts);
* ``probing.stats``: :class:`LayerStats` and the streaming statistics;
* ``probing.health``: :class:`Thresholds`, :class:`Verdict`, the rules;
* ``probing.hooks``: where to measure (from :func:`initlab.trace`) and the hooks that measure there;
* ``probing.monitor``: :class:`Monitor`, the same statistics every ``every`` training steps.

The function ``probe`` is not re-exported here, so ``initlab.probing.probe`` stays the module; use
``initlab.probe``.
"""

from initlab.probing.health import HealthError, Thresholds, Verdict, diagnose
from initlab.probing.monitor import Monitor
from initlab.probing.probe import ProbeResult
from initlab.probing.stats import InputStats, LayerStats

__all__ = ["ProbeResult", "LayerStats", "InputStats", "Thresholds", "Verdict", "HealthError", "diagnose", "Monitor"]
