"""The data of a probe: :class:`ProbeData` (statistics, verdicts, JSON), read by the renderers.

A leaf of the package: it depends on the statistics and the health rules, never on what renders it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab._io import atomic_text
from initlab.probing.health import HealthError, Thresholds, Verdict, depth_chain, diagnose
from initlab.probing.stats import InputStats, LayerStats

__all__ = ["ProbeData"]


@dataclass
class ProbeData:
    """What :func:`probe` measured, as data: per-layer statistics, the input summary and the health verdicts.

    The renderers (:mod:`initlab.report`) read this type; :class:`initlab.probing.probe.ProbeResult` adds the
    methods that render it (``table``, ``to_html``, ``plot``), so data never depends on its rendering.

    Attributes:
        layers: one :class:`~initlab.probing.stats.LayerStats` per recorded point, in execution order.
        input: summary of the (first) input tensor.
        verdicts: :class:`~initlab.probing.health.Verdict` s, errors first (empty when healthy).
        loss: the loss value when the backward pass used a loss, else None.
        backward: "loss", "cotangent" (random Gaussian cotangent on the output, see :func:`probe`) or "none".
        method: how the model was traced ("fx", "hooks", "modules").
        batch_size, seed, bins: the settings of the run.
        thresholds: the :class:`~initlab.probing.health.Thresholds` used for the verdicts.
        notes: anything the reader should know (records that could not be computed, ...).
    """

    layers: list[LayerStats]
    input: InputStats | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    loss: float | None = None
    backward: str = "none"
    method: str = ""
    batch_size: int = 0
    seed: int = 0
    bins: int = 64
    thresholds: Thresholds = field(default_factory=Thresholds)
    notes: list[str] = field(default_factory=list)

    # -- access --------------------------------------------------------------------------------------
    def __getitem__(self, name: str | int) -> LayerStats:
        if isinstance(name, int):
            return self.layers[name]
        for s in self.layers:
            if s.name == name:
                return s
        raise KeyError(f"no recorded layer {name!r}; recorded: {[s.name for s in self.layers]}")

    def __iter__(self) -> Iterator[LayerStats]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def healthy(self) -> bool:
        """True when no verdict was raised."""
        return not self.verdicts

    def diagnose(self, thresholds: Thresholds | dict[str, Any] | None = None, **overrides: Any) -> list[Verdict]:
        """The verdicts under other thresholds (``result.diagnose(dead=0.2)``); ``verdicts`` is unchanged."""
        base = Thresholds.make(thresholds).to_dict() if thresholds is not None else self.thresholds.to_dict()
        base.update(overrides)
        return diagnose(self.layers, self.input, Thresholds.make(base))

    def assert_healthy(self, ignore: tuple[str, ...] | list[str] = ()) -> ProbeData:
        """Raise :class:`~initlab.probing.health.HealthError` (an AssertionError) listing the verdicts whose
        code is not in ``ignore``; return ``self`` when there are none (a CI check)."""
        bad = [v for v in self.verdicts if v.code not in set(ignore)]
        if bad:
            raise HealthError(bad)
        return self

    def profile(self) -> list[LayerStats]:
        """The depth chain the activation/gradient verdicts read (Linear/Conv outputs not fed to a norm)."""
        return depth_chain(self.layers)

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain Python values (``json.dumps``-ready)."""
        return {
            "layers": [s.to_dict() for s in self.layers],
            "input": None if self.input is None else self.input.to_dict(),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "loss": self.loss, "backward": self.backward, "method": self.method, "batch_size": self.batch_size,
            "seed": self.seed, "bins": self.bins, "thresholds": self.thresholds.to_dict(), "notes": list(self.notes),
            "healthy": self.healthy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeData:
        """Rebuild a result from :meth:`to_dict` output (e.g. a JSON file)."""
        th = dict(data.get("thresholds") or {})
        if "input_std" in th:
            th["input_std"] = tuple(th["input_std"])
        return cls(
            layers=[LayerStats.from_dict(d) for d in data["layers"]],
            input=None if data.get("input") is None else InputStats.from_dict(data["input"]),
            verdicts=[Verdict(**{**v, "layers": tuple(v.get("layers", ()))}) for v in data.get("verdicts", [])],
            loss=data.get("loss"), backward=data.get("backward", "none"), method=data.get("method", ""),
            batch_size=data.get("batch_size", 0), seed=data.get("seed", 0), bins=data.get("bins", 64),
            thresholds=Thresholds.make(th or None), notes=list(data.get("notes", [])),
        )

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The result as JSON (written to ``path`` when given); NaN/inf are written as JSON NaN/Infinity."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            atomic_text(path, text, "path")
        return text

    @classmethod
    def load_json(cls, path: str | Path) -> ProbeData:
        """Read a result written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        codes = ", ".join(v.code for v in self.verdicts) or "healthy"
        return f"{type(self).__name__}({len(self.layers)} points, batch {self.batch_size}, {codes})"
