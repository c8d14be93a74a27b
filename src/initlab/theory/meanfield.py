"""Mean-field theory of deep random networks: fixed points, chi_1, phases and depth scales.

A fully connected network with weights ``W_ij ~ N(0, sigma_w2 / n)`` and biases ``b_i ~ N(0, sigma_b2)``
(Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos";
Schoenholz et al. 2017, "Deep information propagation") carries, in the wide limit, a pre-activation
second moment ``q_l`` through the *length map*

    q_{l+1} = V(q_l) = sigma_w2 * E[f(sqrt(q_l) z)^2] + sigma_b2,        z ~ N(0, 1)

and the correlation ``c_l`` of two inputs through the *correlation map*

    c_{l+1} = C(c_l) = (sigma_w2 * E[f(u1) f(u2)] + sigma_b2) / q*,
    u1 = sqrt(q*) z1,  u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2).

Its slope at ``c = 1`` is ``chi_1 = sigma_w2 * E[f'(sqrt(q*) z)^2]``, which also multiplies the gradient
variance at every layer. ``chi_1 < 1``: ordered (inputs collapse together, gradients vanish);
``chi_1 > 1``: chaotic (inputs decorrelate, gradients explode); ``chi_1 = 1``: critical.

Depth scales, as computed here:

* ``xi_q = -1 / ln V'(q*)``: ``|q_l - q*|`` decays like ``exp(-l / xi_q)``. ``V'(q)`` is computed as
  ``sigma_w2 * E[z f(sqrt(q) z) f'(sqrt(q) z)] / sqrt(q)`` (Stein's lemma turns Schoenholz et al.'s
  ``chi_1 + sigma_w2 E[f f'']`` into this form, which needs only f' and so is exact for ReLU-like kinks).
* ``xi_c = -1 / ln(chi_c)`` with ``chi_c`` the slope of the correlation map at its stable fixed point
  ``c*``: in the ordered phase ``c* = 1`` and ``chi_c = chi_1``; in the chaotic phase ``c* < 1`` is found
  by root-finding and ``chi_c = sigma_w2 E[f'(u1) f'(u2)]`` there. When the length map diverges
  (``q* = inf``, unbounded units such as ReLU with ``sigma_w2 > 2``) the correlation map has no finite
  fixed point, and the gradient depth scale ``1 / ln(chi_1)`` (the depth over which gradient variance grows
  by e) is reported instead.
* ``trainable_depth = TRAINABLE_MULTIPLE * xi_c`` with ``TRAINABLE_MULTIPLE = 6``: Schoenholz et al. find
  that networks train when their depth is below about ``6 xi_c`` (their Fig. 5/6).

All Gaussian expectations go through :func:`initlab.gains.expect` (composite Gauss-Legendre with breaks at
the usual kinks), derivatives through autograd on the quadrature nodes, so any activation works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from initlab.gains import Activation, expect, gaussian_nodes, resolve_activation

TRAINABLE_MULTIPLE = 6.0  # Schoenholz et al. 2017: trainable when depth < ~6 xi_c
PHASE_TOL = 1e-6  # |chi_1 - 1| <= PHASE_TOL counts as critical

# Where the length map is scanned for fixed points: 0 and 25 points per decade over 1e-12 .. 1e12.
_Q_GRID = np.concatenate([[0.0], np.logspace(-12.0, 12.0, 601)])
# Relative size below which V(q) - q counts as zero: the quadrature is exact to ~1e-15 on kinked
# units, so the length map of a critical ReLU (V(q) = q) must not show spurious fixed points.
_ZERO_TOL = 1e-13
_Q_TINY = 1e-30  # stands in for q -> 0+ (relu'(0) is 0 in autograd; the limit of E[f'^2] is 1/2)
_Q_HUGE = 1e20  # stands in for q -> inf


# --------------------------------------------------------------------------------------------------
# Elementwise helpers


def derivative(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Elementwise ``f'`` of ``fn`` by autograd (central differences if ``fn`` is not differentiable).

    On the quadrature nodes (none sits on a kink), autograd gives the exact one-sided slopes, so
    ``E[relu'(z)^2] = 1/2`` exactly.

    >>> d = derivative(torch.tanh)
    >>> float(d(torch.zeros(1, dtype=torch.float64)))
    1.0
    """

    def d(x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        try:
            with torch.enable_grad():
                xx = x.clone().requires_grad_(True)
                y = fn(xx)
                if not isinstance(y, torch.Tensor) or not y.requires_grad:
                    raise RuntimeError("not differentiable")
                (g,) = torch.autograd.grad(y.sum(), xx, allow_unused=True)
            if g is None:
                return torch.zeros_like(x)
            return g.detach()
        except (RuntimeError, TypeError):
            h = 1e-6 * (1.0 + x.abs())
            with torch.no_grad():
                return (fn(x + h) - fn(x - h)) / (2 * h)

    return d


def _activation(activation: Any) -> Activation:
    return resolve_activation(activation, argname="activation")


def _second_moment(act: Activation, q: np.ndarray | float) -> Any:
    """``E[f(sqrt(q) z)^2]`` (vectorised over ``q``)."""
    return expect(lambda x: act.fn(x) ** 2, np.sqrt(np.asarray(q, dtype=np.float64)))


def _slope_moment(act: Activation, q: np.ndarray | float) -> Any:
    """``E[f'(sqrt(q) z)^2]`` with q clipped to (0, inf) so the limits are taken at the ends."""
    q = np.clip(np.asarray(q, dtype=np.float64), _Q_TINY, _Q_HUGE)
    d = derivative(act.fn)
    return expect(lambda x: d(x) ** 2, np.sqrt(q))


def _length_map_slope(act: Activation, sigma_w2: float, q: float) -> float:
    """``V'(q) = sigma_w2 E[z f(sqrt(q) z) f'(sqrt(q) z)] / sqrt(q)`` (Stein's lemma)."""
    q = float(np.clip(q, _Q_TINY, _Q_HUGE))
    s = math.sqrt(q)
    d = derivative(act.fn)
    # x = s z on the grid, so z = x / s
    return sigma_w2 * float(expect(lambda x: (x / s) * act.fn(x) * d(x), s)) / s


def _illinois(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    fa: np.ndarray,
    fb: np.ndarray,
    iters: int = 200,
    rtol: float = 1e-15,
) -> np.ndarray:
    """Vectorised Illinois (modified regula falsi) root finder on brackets ``fa * fb <= 0``.

    ``f(x, idx)`` evaluates the function for the entries ``idx`` at points ``x``.
    """
    a, b, fa, fb = (np.array(v, dtype=np.float64) for v in (a, b, fa, fb))
    root = np.where(fa == 0, a, np.where(fb == 0, b, np.nan))
    side = np.zeros(a.shape, dtype=int)
    for _ in range(iters):
        active = np.isnan(root) & (np.abs(b - a) > rtol * np.maximum(np.abs(a), np.abs(b)))
        if not active.any():
            break
        idx = np.flatnonzero(active)
        aa, bb, ffa, ffb = a[idx], b[idx], fa[idx], fb[idx]
        c = (aa * ffb - bb * ffa) / (ffb - ffa)
        bad = ~np.isfinite(c) | (c <= np.minimum(aa, bb)) | (c >= np.maximum(aa, bb))
        c = np.where(bad, 0.5 * (aa + bb), c)
        fc = np.asarray(f(c, idx), dtype=np.float64)
        zero = fc == 0
        root[idx[zero]] = c[zero]
        same_b = (np.sign(fc) == np.sign(ffb)) & ~zero
        same_a = ~same_b & ~zero
        ib, ia = idx[same_b], idx[same_a]
        b[ib], fb[ib] = c[same_b], fc[same_b]
        fa[ib] = np.where(side[ib] == -1, 0.5 * fa[ib], fa[ib])
        side[ib] = -1
        a[ia], fa[ia] = c[same_a], fc[same_a]
        fb[ia] = np.where(side[ia] == 1, 0.5 * fb[ia], fb[ia])
        side[ia] = 1
    rest = np.isnan(root)
    root[rest] = np.where(np.abs(fa[rest]) <= np.abs(fb[rest]), a[rest], b[rest])
    return root


def _sign(g: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.where(np.abs(g) <= _ZERO_TOL * np.maximum(scale, 1e-300), 0, np.sign(g)).astype(int)


def _q_star(act: Activation, sigma_w2: np.ndarray, sigma_b2: np.ndarray, q0: float) -> np.ndarray:
    """Fixed point of the length map reached by iterating from ``q0`` (vectorised over the parameters).

    ``V`` is continuous, so iterating from ``q0`` moves monotonically towards the nearest fixed point in
    the direction of ``V(q0) - q0``: up to the first root above ``q0`` (``inf`` if there is none) or down
    to the last one below it (``0`` when ``V(0) = 0`` and no root lies between). A ``q0`` that is itself
    a fixed point (critical ReLU, where every ``q`` is one) is returned unchanged.
    """
    sw2 = np.asarray(sigma_w2, dtype=np.float64).ravel()
    sb2 = np.asarray(sigma_b2, dtype=np.float64).ravel()
    sw2, sb2 = np.broadcast_arrays(sw2, sb2)
    Q = _Q_GRID
    M = np.asarray(_second_moment(act, Q))
    V = sw2[:, None] * M[None, :] + sb2[:, None]
    sgn = _sign(V - Q[None, :], np.maximum(V, Q[None, :]))
    m0 = float(_second_moment(act, q0))
    V0 = sw2 * m0 + sb2
    g0 = V0 - q0
    s0 = _sign(g0, np.maximum(V0, q0))

    out = np.full(sw2.shape, np.nan)
    out[s0 == 0] = q0
    lo = np.zeros_like(out)
    hi = np.zeros_like(out)
    flo = np.zeros_like(out)
    fhi = np.zeros_like(out)
    G = len(Q)

    up = s0 > 0
    if up.any():
        mask = (Q[None, :] > q0) & (sgn[up] <= 0)
        has = mask.any(axis=1)
        j = np.argmax(mask, axis=1)
        iu = np.flatnonzero(up)
        out[iu[~has]] = math.inf
        iu, j = iu[has], j[has]
        prev = np.maximum(j - 1, 0)
        use_q0 = Q[prev] <= q0
        lo[iu] = np.where(use_q0, q0, Q[prev])
        flo[iu] = np.where(use_q0, g0[iu], (V[iu, prev] - Q[prev]))
        hi[iu] = Q[j]
        fhi[iu] = np.where(sgn[iu, j] == 0, 0.0, V[iu, j] - Q[j])
    down = s0 < 0
    if down.any():
        mask = (Q[None, :] < q0) & (sgn[down] >= 0)
        j = G - 1 - np.argmax(mask[:, ::-1], axis=1)
        has = mask.any(axis=1)
        idn = np.flatnonzero(down)
        out[idn[~has]] = 0.0  # cannot happen (Q[0] = 0 has V(0) >= 0) but keep the fallback explicit
        idn, j = idn[has], j[has]
        nxt = np.minimum(j + 1, G - 1)
        use_q0 = Q[nxt] >= q0
        lo[idn] = Q[j]
        flo[idn] = np.where(sgn[idn, j] == 0, 0.0, V[idn, j] - Q[j])
        hi[idn] = np.where(use_q0, q0, Q[nxt])
        fhi[idn] = np.where(use_q0, g0[idn], V[idn, nxt] - Q[nxt])

    todo = np.flatnonzero(np.isnan(out))
    if todo.size:

        def g(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
            k = todo[idx]
            return sw2[k] * np.asarray(_second_moment(act, x)) + sb2[k] - x

        out[todo] = _illinois(g, lo[todo], hi[todo], flo[todo], fhi[todo])
    return out


def _chi_1(act: Activation, sigma_w2: np.ndarray, sigma_b2: np.ndarray, q0: float) -> tuple[np.ndarray, np.ndarray]:
    qs = _q_star(act, sigma_w2, sigma_b2, q0)
    sw2 = np.broadcast_to(np.asarray(sigma_w2, dtype=np.float64).ravel(), qs.shape)
    return sw2 * np.asarray(_slope_moment(act, qs)).reshape(qs.shape), qs


# --------------------------------------------------------------------------------------------------
# Two-dimensional expectations for the correlation map (product of the same 1-D rule)


def _pair_expect(g1: Callable, g2: Callable, q: float, c: float) -> float:
    """``E[g1(u1) g2(u2)]``, ``u1 = sqrt(q) z1``, ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)``."""
    z, w = gaussian_nodes()
    keep = w > 1e-20 * w.max()  # nodes beyond |z| ~ 9 carry no weight in double precision
    z, w = z[keep], w[keep]
    s = math.sqrt(q)
    c = min(max(c, -1.0), 1.0)
    u1 = torch.from_numpy(s * z)
    u2 = torch.from_numpy(s * (c * z[:, None] + math.sqrt(max(1.0 - c * c, 0.0)) * z[None, :]))
    a = g1(u1).detach().double().numpy()
    b = g2(u2).detach().double().numpy()
    return float((w * a) @ b @ w)


def _correlation_fixed_point(act: Activation, sigma_w2: float, sigma_b2: float, q: float) -> tuple[float, float]:
    """Stable fixed point ``c* < 1`` of the correlation map in the chaotic phase and its slope ``chi_c``."""

    def C(c: float) -> float:
        with torch.no_grad():
            return (sigma_w2 * _pair_expect(act.fn, act.fn, q, c) + sigma_b2) / q

    hi_c = 1.0 - 1e-3
    f_hi = C(hi_c) - hi_c
    while f_hi >= 0 and hi_c < 1 - 1e-9:
        hi_c = 1 - (1 - hi_c) / 10
        f_hi = C(hi_c) - hi_c
    if f_hi >= 0:  # c* indistinguishable from 1
        return 1.0, float("nan")
    # c = 1 repels (chi_1 > 1), so correlations slide down to the LARGEST fixed point below 1; c = -1
    # can be a fixed point too (odd units without bias) but an unstable one, so scan down from hi_c.
    grid = np.linspace(-1.0, hi_c, 41)[1:-1][::-1]
    lo_c, f_lo = hi_c, f_hi
    for c in grid:
        f = C(float(c)) - float(c)
        if f >= 0:
            lo_c, f_lo = float(c), f
            break
        hi_c, f_hi = float(c), f
    if f_lo < 0:  # no crossing above -1 + 2/40: the fixed point is at (or next to) -1
        c_star = -1.0
    elif f_lo == 0:
        c_star = lo_c
    else:

        def h(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return np.array([C(float(v)) - float(v) for v in x])

        c_star = float(_illinois(h, np.array([lo_c]), np.array([hi_c]), np.array([f_lo]), np.array([f_hi]),
                                 iters=80, rtol=1e-12)[0])
    d = derivative(act.fn)
    chi_c = sigma_w2 * _pair_expect(d, d, q, c_star)
    return c_star, chi_c


# --------------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class MeanField:
    """Mean-field summary of an infinitely wide random network (see the module docstring).

    ``q_star``: fixed point of the length map reached from ``q0`` (``inf`` when it diverges);
    ``chi_1 = sigma_w2 E[f'(sqrt(q*) z)^2]``; ``phase``: "ordered", "critical" or "chaotic";
    ``xi_q``, ``xi_c``: depth scales (``inf`` at criticality); ``trainable_depth = 6 xi_c``;
    ``c_star``, ``chi_c``: the correlation fixed point and the slope there used for ``xi_c``.
    """

    activation: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi_1: float
    phase: str
    xi_q: float
    xi_c: float
    trainable_depth: float
    c_star: float
    chi_c: float
    q0: float = 1.0

    def trainable(self, depth: int) -> bool:
        """True when ``depth <= trainable_depth`` (Schoenholz et al. 2017's rule of thumb)."""
        return depth <= self.trainable_depth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str, str]]:
        """(quantity, value, meaning) rows for a terminal table."""

        def fmt(x: float) -> str:
            return "inf" if math.isinf(x) else f"{x:.6g}"

        return [
            ("activation", self.activation, ""),
            ("sigma_w2", fmt(self.sigma_w2), "weight variance x fan_in"),
            ("sigma_b2", fmt(self.sigma_b2), "bias variance"),
            ("q_star", fmt(self.q_star), f"fixed point of the length map from q0={self.q0:g}"),
            ("chi_1", fmt(self.chi_1), "sigma_w2 E[f'(sqrt(q*) z)^2]; gradient gain per layer"),
            ("phase", self.phase, "chi_1 < 1 ordered, = 1 critical, > 1 chaotic"),
            ("xi_q", fmt(self.xi_q), "depth scale of the length (-1/ln V'(q*))"),
            ("xi_c", fmt(self.xi_c), "depth scale of correlations (-1/ln chi_c)"),
            ("trainable_depth", fmt(self.trainable_depth), f"{TRAINABLE_MULTIPLE:g} x xi_c"),
        ]

    def __str__(self) -> str:
        width = max(len(r[0]) for r in self.rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v, _ in self.rows())


def _check_nonneg(name: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        need = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {need} finite number; got {value!r}")
    return v


def _phase(chi_1: float) -> str:
    if abs(chi_1 - 1.0) <= PHASE_TOL:
        return "critical"
    return "ordered" if chi_1 < 1.0 else "chaotic"


def mean_field(activation: Any, sigma_w2: float, sigma_b2: float = 0.0, *, q0: float = 1.0) -> MeanField:
    """Mean-field fixed point, ``chi_1``, phase and depth scales of a deep random network.

    ``activation`` is a name ("tanh"), an ``nn.Module``, a function or any elementwise callable;
    ``sigma_w2`` is the weight variance times fan_in (He = 2, LeCun = 1), ``sigma_b2`` the bias variance,
    ``q0`` the second moment of the input pre-activation the length map starts from.

    >>> mf = mean_field("relu", 2.0)
    >>> mf.chi_1, mf.phase
    (1.0, 'critical')
    >>> mean_field("tanh", 0.5).phase
    'ordered'
    """
    act = _activation(activation)
    sw2 = _check_nonneg("sigma_w2", sigma_w2, positive=True)
    sb2 = _check_nonneg("sigma_b2", sigma_b2)
    q0 = _check_nonneg("q0", q0, positive=True)
    chi, qs = _chi_1(act, np.array([sw2]), np.array([sb2]), q0)
    chi_1, q_star = float(chi[0]), float(qs[0])
    phase = _phase(chi_1)

    slope_v = _length_map_slope(act, sw2, q_star) if math.isfinite(q_star) else math.inf
    xi_q = _depth_scale(slope_v)

    c_star, chi_c = 1.0, chi_1
    if phase == "chaotic":
        if math.isfinite(q_star) and q_star > 0:
            c_star, chi_c = _correlation_fixed_point(act, sw2, sb2, q_star)
            xi_c = _depth_scale(chi_c) if math.isfinite(chi_c) else math.inf
        else:
            # length map diverges: use the gradient depth scale 1 / ln(chi_1)
            c_star, chi_c = float("nan"), chi_1
            xi_c = 1.0 / math.log(chi_1)
    else:
        xi_c = _depth_scale(chi_1) if phase == "ordered" else math.inf
    return MeanField(
        activation=str(act),
        sigma_w2=sw2,
        sigma_b2=sb2,
        q_star=q_star,
        chi_1=chi_1,
        phase=phase,
        xi_q=xi_q,
        xi_c=xi_c,
        trainable_depth=TRAINABLE_MULTIPLE * xi_c,
        c_star=c_star,
        chi_c=chi_c,
        q0=q0,
    )


def _depth_scale(slope: float) -> float:
    """``-1 / ln(slope)`` for a contraction ``0 <= slope < 1``; ``inf`` when it does not contract."""
    if not math.isfinite(slope) or slope >= 1.0 - PHASE_TOL:
        return math.inf
    if slope <= 0:
        return 0.0
    return -1.0 / math.log(slope)


def _critical_sw2(act: Activation, sigma_b2: np.ndarray, q0: float) -> np.ndarray:
    """``sigma_w2`` with ``chi_1 = 1`` for each ``sigma_b2``; NaN where ``[1e-6, 1e6]`` holds no crossing."""
    sb2 = np.asarray(sigma_b2, dtype=np.float64).ravel()
    lo, hi = np.full(sb2.shape, math.log(1e-6)), np.full(sb2.shape, math.log(1e6))

    def h(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        chi, _ = _chi_1(act, np.exp(x), sb2[idx], q0)
        with np.errstate(divide="ignore"):
            return np.log(chi)

    f_lo = h(lo, np.arange(sb2.size))
    f_hi = h(hi, np.arange(sb2.size))
    ok = (f_lo < 0) & (f_hi > 0)
    out = np.full(sb2.shape, np.nan)
    if ok.any():
        idx = np.flatnonzero(ok)
        roots = _illinois(lambda x, i: h(x, idx[i]), lo[idx], hi[idx], f_lo[idx], f_hi[idx], rtol=1e-14)
        # a sign change is not a crossing when chi_1 jumps over 1 (GELU at sigma_b2 = 0: q* leaves 0 there):
        # keep only roots where chi_1 really is 1
        real = np.abs(h(roots, idx)) < 1e-6
        out[idx[real]] = np.exp(roots[real])
    return out


def critical_point(activation: Any, sigma_b2: float = 0.0, *, q0: float = 1.0) -> float:
    """The weight variance ``sigma_w2`` (times fan_in) at which ``chi_1 = 1``: the edge of chaos.

    For ReLU it is 2 for every ``sigma_b2`` (He et al. 2015's init); for tanh with ``sigma_b2 = 0`` it is 1.
    Raises ``ValueError`` when ``chi_1`` never equals 1, saying so: GELU at ``sigma_b2 = 0`` has none (its
    ``chi_1`` jumps from about 0.59 to 1.18 where the fixed point ``q*`` leaves 0).

    >>> round(critical_point("relu"), 9)
    2.0
    """
    act = _activation(activation)
    sb2 = _check_nonneg("sigma_b2", sigma_b2)
    q0 = _check_nonneg("q0", q0, positive=True)
    value = float(_critical_sw2(act, np.array([sb2]), q0)[0])
    if not math.isfinite(value):
        raise ValueError(
            f"activation {act}: chi_1 does not cross 1 for sigma_w2 in [1e-6, 1e6] at sigma_b2={sb2:g} (it may "
            "jump over 1 where the fixed point q* changes branch); it has no critical point there"
        )
    return value


def chi_1_grid(activation: Any, sigma_w2: Sequence[float] | np.ndarray, sigma_b2: Sequence[float] | np.ndarray,
               *, q0: float = 1.0) -> np.ndarray:
    """``chi_1`` on the grid ``sigma_b2 x sigma_w2`` (shape ``(len(sigma_b2), len(sigma_w2))``)."""
    act = _activation(activation)
    w = np.asarray(sigma_w2, dtype=np.float64)
    b = np.asarray(sigma_b2, dtype=np.float64)
    if w.ndim != 1 or b.ndim != 1 or (w <= 0).any() or (b < 0).any():
        raise ValueError("sigma_w2 must be a 1-D array of positive numbers and sigma_b2 of non-negative ones")
    W, B = np.meshgrid(w, b)
    chi, _ = _chi_1(act, W.ravel(), B.ravel(), q0)
    return chi.reshape(W.shape)


def phase_diagram(
    activation: Any,
    path: str | Path,
    *,
    sigma_w2: tuple[float, float] | None = None,
    sigma_b2: tuple[float, float] = (0.0, 1.0),
    resolution: tuple[int, int] = (60, 40),
    q0: float = 1.0,
) -> Path:
    """Draw ``chi_1`` over ``(sigma_w2, sigma_b2)`` with the critical line ``chi_1 = 1``; save to ``path``.

    ``sigma_w2`` defaults to ``(0.2, 4) x`` the critical point at ``sigma_b2 = 0`` so any activation
    gets a readable picture; colours are ``log(chi_1)`` on a diverging map (blue ordered, red chaotic).
    Returns the path written (format from its suffix, e.g. ``.png``, ``.pdf``, ``.svg``).

    >>> phase_diagram("tanh", "tanh_phase.png")  # doctest: +SKIP
    PosixPath('tanh_phase.png')
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    act = _activation(activation)
    if (not isinstance(resolution, (tuple, list)) or len(resolution) != 2
            or not all(isinstance(r, int) and r >= 2 for r in resolution)):
        raise ValueError(f"resolution must be a pair of integers >= 2; got {resolution!r}")
    if sigma_w2 is None:
        c0 = float(_critical_sw2(act, np.array([0.0]), q0)[0])
        if not math.isfinite(c0):
            c0 = 1.0
        sigma_w2 = (0.2 * c0, 4.0 * c0)
    w_lo, w_hi = (_check_nonneg("sigma_w2", v, positive=True) for v in sigma_w2)
    b_lo, b_hi = (_check_nonneg("sigma_b2", v) for v in sigma_b2)
    if w_hi <= w_lo or b_hi <= b_lo:
        raise ValueError("sigma_w2 and sigma_b2 must be increasing (low, high) pairs")
    ws = np.linspace(w_lo, w_hi, resolution[0])
    bs = np.linspace(b_lo, b_hi, resolution[1])
    chi = chi_1_grid(act, ws, bs, q0=q0)
    line_b = np.linspace(b_lo, b_hi, 4 * resolution[1])
    line_w = _critical_sw2(act, line_b, q0)

    fig = Figure(figsize=(6.4, 4.6), dpi=110)
    ax = fig.add_subplot()
    with np.errstate(divide="ignore"):
        logchi = np.log(np.clip(chi, 1e-12, None))
    # each side of chi_1 = 1 gets the full half of the colour map, so a weakly chaotic region still shows
    lo_v, hi_v = min(float(np.nanmin(logchi)), -1e-3), max(float(np.nanmax(logchi)), 1e-3)
    mesh = ax.pcolormesh(ws, bs, logchi, shading="auto", cmap="RdBu_r",
                         norm=TwoSlopeNorm(vcenter=0.0, vmin=lo_v, vmax=hi_v))
    cbar = fig.colorbar(mesh, ax=ax)
    ticks = [t for t in (0.1, 0.25, 0.5, 0.8, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0) if lo_v <= math.log(t) <= hi_v]
    cbar.set_ticks([math.log(t) for t in ticks], labels=[f"{t:g}" for t in ticks])
    cbar.set_label(r"$\chi_1$")
    ok = np.isfinite(line_w) & (line_w >= w_lo) & (line_w <= w_hi)
    ax.plot(line_w[ok], line_b[ok], color="black", lw=2, label=r"critical line $\chi_1 = 1$")
    ax.set_xlabel(r"$\sigma_w^2$ (weight variance $\times$ fan_in)")
    ax.set_ylabel(r"$\sigma_b^2$ (bias variance)")
    ax.set_title(f"Mean-field phase diagram: {act}")
    W, B = np.meshgrid(ws, bs)
    for mask, label in ((chi < 1, "ordered\n(gradients vanish)"), (chi > 1, "chaotic\n(gradients explode)")):
        if mask.sum() >= 4:  # label each phase at the centre of its cells
            ax.text(float(W[mask].mean()), float(B[mask].mean()), label, ha="center", va="center", fontsize=9,
                    bbox={"boxstyle": "round", "fc": "white", "alpha": 0.7, "lw": 0})
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    from initlab._io import atomic_figure

    return atomic_figure(fig, path, "path")
