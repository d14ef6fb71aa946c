"""lsqlab: differentiable matrix-free least squares (LSMR in JAX) and the null-space method.

Values (:mod:`lsqlab.lsmr`, :mod:`lsqlab.cgls`, :mod:`lsqlab.dense`, :mod:`lsqlab.preconditioners`),
gradients (:mod:`lsqlab.gradients`), the public solve :func:`lstsq`, and what to do with them: the
null-space method (:mod:`lsqlab.nullspace`, its Gram-form solves in :mod:`lsqlab.multipliers`),
constraints (:mod:`lsqlab.constraints`) and the comparison methods (:mod:`lsqlab.baselines`).
"""

from lsqlab import baselines, constraints, multipliers, nullspace
from lsqlab.lsmr import STOP_REASONS, LSMROptions, LstSqInfo, lsmr
from lsqlab.lstsq import lstsq
from lsqlab.nullspace import NullSpaceState, ProjectionInfo, project, transform
from lsqlab.preconditioners import column_scaling, sketch_preconditioner

__all__ = [
    "STOP_REASONS", "LSMROptions", "LstSqInfo", "NullSpaceState", "ProjectionInfo", "baselines",
    "column_scaling", "constraints", "lsmr", "lstsq", "multipliers", "nullspace", "project",
    "sketch_preconditioner", "transform",
]
