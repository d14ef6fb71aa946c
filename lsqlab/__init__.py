"""lsqlab: differentiable matrix-free least squares (LSMR in JAX) and the null-space method.

Values (:mod:`lsqlab.lsmr`, :mod:`lsqlab.dense`), gradients (:mod:`lsqlab.gradients`) and the
public solve :func:`lstsq`.
"""

from lsqlab.lsmr import STOP_REASONS, LSMROptions, LstSqInfo, lsmr
from lsqlab.lstsq import lstsq

__all__ = ["STOP_REASONS", "LSMROptions", "LstSqInfo", "lsmr", "lstsq"]
