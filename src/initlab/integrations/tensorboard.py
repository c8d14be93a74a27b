"""TensorBoard event files from probe and Monitor statistics: per-layer scalars, histograms, verdict counts.

What one record (one probe, one recorded :class:`initlab.Monitor` step, one ``ProbeCallback`` probe) writes
at its step, for every recorded point ``NAME`` (a layer's output, or an activation such as ``fc1:relu``):

* scalars ``act_std/NAME``, ``grad_std/NAME``, ``grad_weight_ratio/NAME``, ``frac_dead_units/NAME`` and
  ``frac_saturated/NAME`` (the :class:`~initlab.probing.stats.LayerStats` fields of those names; a value the
  probe did not measure, ``None``, is not written);
* the histogram ``activations/NAME`` of the point's output: the probe's own fixed-range bins, plus one bucket
  below and one above for the values that fell outside the range;
* the verdict counts ``verdicts/total``, ``verdicts/errors``, ``verdicts/warnings`` and ``verdicts/CODE`` for
  every code of :data:`initlab.probing.health.CODES` (0 when absent, so a chart shows a problem going away).

A one-shot probe (``initlab probe --tensorboard DIR``) also writes its depth profile: ``profile/act_std`` and
``profile/grad_std`` with the step set to the position in the depth chain (Linear/Conv outputs in order).

Scalars are stored by TensorBoard in float32, histograms in float64. The writer is
``torch.utils.tensorboard.SummaryWriter``, imported only when a writer is made: initlab does not need the
``tensorboard`` package otherwise (``pip install initlab[tensorboard]``).

>>> from initlab.probing.stats import LayerStats
>>> layer_scalars([LayerStats(name="fc1", kind="linear", act_std=0.5, grad_std=None)])
{'act_std/fc1': 0.5, 'frac_dead_units/fc1': 0.0}
>>> verdict_counts([])["verdicts/total"]
0.0
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from initlab._io import output_dir
from initlab.probing.health import CODES, Verdict, depth_chain
from initlab.probing.stats import LayerStats

__all__ = ["SCALARS", "layer_scalars", "verdict_counts", "summary", "histogram", "ProbeWriter", "write_run",
           "summary_writer", "require", "check_logdir"]

# the per-layer statistics written as scalars, one chart group each
SCALARS = ("act_std", "grad_std", "grad_weight_ratio", "frac_dead_units", "frac_saturated")
INSTALL = "pip install initlab[tensorboard] (or pip install tensorboard)"


def _number(v: Any) -> float | None:
    return None if v is None else float(v)


def layer_scalars(layers: Sequence[LayerStats]) -> dict[str, float]:
    """``{"STAT/NAME": value}`` for every statistic of :data:`SCALARS` the probe measured (None is skipped)."""
    out = {}
    for stat in SCALARS:
        for s in layers:
            v = _number(getattr(s, stat))
            if v is not None:
                out[f"{stat}/{s.name}"] = v
    return out


def verdict_counts(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """``verdicts/total``, ``/errors``, ``/warnings`` and one count per code of ``CODES`` (0 when absent)."""
    out = {"verdicts/total": float(len(verdicts)),
           "verdicts/errors": float(sum(v.severity == "error" for v in verdicts)),
           "verdicts/warnings": float(sum(v.severity != "error" for v in verdicts))}
    for code in CODES:
        out[f"verdicts/{code}"] = float(sum(v.code == code for v in verdicts))
    return out


def summary(layers: Sequence[LayerStats], verdicts: Sequence[Verdict]) -> dict[str, float]:
    """A few numbers for a training log: the verdict counts, one 1.0 per verdict code raised, and the extremes
    over the recorded points of ``act_std`` and ``grad_std`` (min and max) and of ``grad_weight_ratio`` (max).

    Keys: ``errors``, ``warnings``, ``verdict/CODE``, ``act_std_min``, ``act_std_max``, ``grad_std_min``,
    ``grad_std_max``, ``grad_weight_ratio_max`` (a key is left out when no point measured the statistic).
    Non-finite values are kept (a NaN activation is news), but ignored when taking the extremes of the rest.
    Normalization layers are left out of ``grad_weight_ratio_max``: their gain starts as all ones (std 0), so
    its ratio is undefined at step 0 and huge after the first updates (measured: 12 for a GPT-2 ``ln_f``
    after two steps, where every matrix is below 0.7), which would hide the matrices' ratios.
    """
    counts = verdict_counts(verdicts)
    out = {"errors": counts["verdicts/errors"], "warnings": counts["verdicts/warnings"]}
    for v in verdicts:
        out[f"verdict/{v.code}"] = 1.0
    for stat, ends in (("act_std", (min, max)), ("grad_std", (min, max)), ("grad_weight_ratio", (max,))):
        values = [float(getattr(s, stat)) for s in layers if getattr(s, stat) is not None
                  and not (stat == "grad_weight_ratio" and s.kind == "norm")]
        if not values:
            continue
        finite = [x for x in values if math.isfinite(x)] or values
        for end in ends:
            out[f"{stat}_{end.__name__}"] = end(finite)
    return out


def histogram(s: LayerStats) -> dict[str, Any] | None:
    """The keyword arguments of ``SummaryWriter.add_histogram_raw`` for a point's activation histogram (None
    when it has none): the probe's bins, with values below/above the fixed range as one extra bucket each."""
    if not s.hist_counts or not s.count or len(s.hist_edges) != len(s.hist_counts) + 1:
        return None
    edges, counts = [float(e) for e in s.hist_edges], [int(c) for c in s.hist_counts]
    lo = float(s.act_min) if math.isfinite(s.act_min) else edges[0]
    hi = float(s.act_max) if math.isfinite(s.act_max) else edges[-1]
    limits = edges[1:]
    if s.hist_under:
        limits, counts = [edges[0], *limits], [int(s.hist_under), *counts]
    if s.hist_over:
        limits, counts = [*limits, max(hi, edges[-1])], [*counts, int(s.hist_over)]
    mean, std = float(s.act_mean), float(s.act_std)
    return {"min": min(lo, edges[0]), "max": max(hi, limits[-1]), "num": int(s.count), "sum": mean * s.count,
            "sum_squares": (std * std + mean * mean) * s.count, "bucket_limits": limits, "bucket_counts": counts}


def require(argument: str = "tensorboard") -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or an ImportError naming ``argument`` and how to install the
    ``tensorboard`` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(f"{argument}: writing TensorBoard event files needs the tensorboard package, which is "
                          f"not installed; install it with {INSTALL}") from None
    return SummaryWriter


def check_logdir(logdir: Any, argument: str = "tensorboard") -> Path:
    """What a TensorBoard output needs, checked before any work: ``logdir`` is a str or a Path (else a TypeError),
    the ``tensorboard`` package is installed (see :func:`require`) and ``logdir`` is a writable folder (created;
    else a ValueError). Every message names ``argument``."""
    if not isinstance(logdir, (str, os.PathLike)):
        raise TypeError(f"{argument} must be None or a folder (str or Path); got {type(logdir).__name__}")
    require(argument)
    return output_dir(logdir, argument)


def summary_writer(logdir: str | os.PathLike, argument: str = "tensorboard") -> Any:
    """A ``SummaryWriter`` on ``logdir`` (created; a path that cannot be a writable folder is a ValueError naming
    ``argument``); an ImportError saying how to install when tensorboard is missing (see :func:`require`)."""
    writer_cls = require(argument)
    folder = output_dir(logdir, argument)
    return writer_cls(log_dir=str(folder))


class ProbeWriter:
    """Writes probe / Monitor records into one TensorBoard run folder (see the module docstring for the tags).

    Each :meth:`write` is flushed at once, so a TensorBoard watching the folder sees a record as soon as it is
    made; event records are framed with checksums, so a run cut short leaves every record before it readable.

    Args:
        logdir: the run folder (created with its parents).
        argument: the name of the argument ``logdir`` came from, for error messages.
    """

    def __init__(self, logdir: str | os.PathLike, argument: str = "tensorboard") -> None:
        self.logdir = Path(logdir)
        self.writer = summary_writer(logdir, argument)

    def write(self, layers: Sequence[LayerStats], verdicts: Sequence[Verdict], step: int) -> None:
        """One record: per-layer scalars and histograms, and the verdict counts, at ``step``."""
        w = self.writer
        for tag, value in {**layer_scalars(layers), **verdict_counts(verdicts)}.items():
            w.add_scalar(tag, value, global_step=step)
        for s in layers:
            h = histogram(s)
            if h is not None:
                w.add_histogram_raw(f"activations/{s.name}", global_step=step, **h)
        w.flush()

    def write_profile(self, layers: Sequence[LayerStats]) -> None:
        """``profile/act_std`` and ``profile/grad_std`` over the depth chain (step = position in the chain)."""
        for i, s in enumerate(depth_chain(layers)):
            self.writer.add_scalar("profile/act_std", float(s.act_std), global_step=i)
            if s.grad_std is not None:
                self.writer.add_scalar("profile/grad_std", float(s.grad_std), global_step=i)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> ProbeWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_run(logdir: str | os.PathLike, run: str, layers: Sequence[LayerStats], verdicts: Sequence[Verdict], *,
              argument: str = "--tensorboard") -> Path:
    """Write one probe as the run ``logdir/run`` (step 0 plus its depth profile), all or nothing.

    The run is written into a hidden temporary folder beside it and renamed into place when complete; a run of
    the same name is replaced (the way a re-run replaces its JSON), and on any error the folder is as it was.
    """
    root = output_dir(logdir, argument)
    target = root / run
    if target.exists() and not target.is_dir():
        raise ValueError(f"{argument} {str(root)!r}: {str(target)!r} is a file, not a run folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{run}.", suffix=".part", dir=root))
    old = None
    try:
        with ProbeWriter(tmp, argument) as w:
            w.write(layers, verdicts, 0)
            w.write_profile(layers)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{run}.", suffix=".old", dir=root))
            os.replace(target, old)  # onto an empty folder: atomic
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            if target.exists():  # the old run never moved (an empty placeholder is left)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
