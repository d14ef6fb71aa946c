"""lsqlab: differentiable matrix-free least squares (LSMR in JAX) and the null-space method.

Values: x = LstSq(A, b, damp) = argmin ||A x - b||^2 + damp^2 ||x||^2 (minimum norm when damp = 0) by
:func:`lstsq`, with any solver of the contract in :mod:`lsqlab.solver` (:class:`Solver`,
:class:`SolverOptions`, :class:`LstSqInfo`): :mod:`lsqlab.lsmr`, :mod:`lsqlab.cgls`, the dense
reference :mod:`lsqlab.dense`, right preconditioners :mod:`lsqlab.preconditioners`.
Gradients: one set of rules for every solver (:mod:`lsqlab.gradients`).
What to do with them: the null-space method for equality-constrained training (:mod:`lsqlab.nullspace`,
its Gram-form solves in :mod:`lsqlab.multipliers`), constraints (:mod:`lsqlab.constraints`) and the
comparison methods (:mod:`lsqlab.baselines`). The teaching maths behind the notebooks and widgets is
in the :mod:`lsqlab.lab` sub-package; the applications in :mod:`lsqlab.applications`.
"""

from lsqlab import baselines, constraints, multipliers, nullspace
from lsqlab.lsmr import lsmr
from lsqlab.lstsq import lstsq
from lsqlab.nullspace import NullSpaceState, ProjectionInfo, project, transform
from lsqlab.preconditioners import column_scaling, sketch_preconditioner
from lsqlab.solver import STOP_REASONS, LstSqInfo, Solver, SolverOptions

__all__ = [
    "STOP_REASONS", "LstSqInfo", "NullSpaceState", "ProjectionInfo", "Solver", "SolverOptions", "baselines",
    "column_scaling", "constraints", "lsmr", "lstsq", "multipliers", "nullspace", "project",
    "sketch_preconditioner", "transform",
]
