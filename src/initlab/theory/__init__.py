"""Propagation theory: predict, before running anything, how signal and gradient travel through a network.

* :func:`propagate` walks a model's graph and predicts per-layer forward variance and backward gradient
  variance from the actual weights (:class:`Prediction`).
* :func:`compare` puts a prediction next to a probe's measurement (:class:`Comparison`).
* :func:`mean_field`, :func:`critical_point`, :func:`phase_diagram`: mean-field theory of deep random
  networks (Poole et al. 2016, Schoenholz et al. 2017): fixed points, chi_1, order/chaos, depth scales.
* :func:`jacobian_spectrum`: singular values of the input-output Jacobian (dynamical isometry,
  Saxe et al. 2013, Pennington et al. 2017).

>>> from initlab.theory import mean_field
>>> mean_field("relu", 2.0).phase
'critical'
"""

from initlab.theory.compare import Comparison, ComparisonRow, compare
from initlab.theory.jacobian import JacobianSpectrum, jacobian_spectrum
from initlab.theory.meanfield import TRAINABLE_MULTIPLE, MeanField, critical_point, mean_field, phase_diagram
from initlab.theory.propagate import LayerPrediction, Prediction, propagate

__all__ = [
    "propagate", "Prediction", "LayerPrediction", "compare", "Comparison", "ComparisonRow", "mean_field", "MeanField",
    "critical_point", "phase_diagram", "TRAINABLE_MULTIPLE", "jacobian_spectrum", "JacobianSpectrum",
]
