"""Data-dependent initialization: LSUV (:func:`lsuv`) and greedy layer-wise pretraining (:func:`pretrain`).

Both are also exported from the top level (``initlab.lsuv``, ``initlab.pretrain``), loaded on first use.
"""

from initlab.datainit.lsuv import LSUVLayer, LSUVReport, lsuv
from initlab.datainit.pretrain import PretrainedLayer, PretrainReport, pretrain

__all__ = ["lsuv", "LSUVReport", "LSUVLayer", "pretrain", "PretrainReport", "PretrainedLayer"]
