"""Interactive views for the notebooks: thin ipywidgets over the plain functions in :mod:`lsqlab`."""

from lsqlab.widgets.adjoint_explorer import AdjointExplorer
from lsqlab.widgets.damping import DampingExplorer
from lsqlab.widgets.manifold_explorer import ManifoldExplorer
from lsqlab.widgets.solver_explorer import SolverExplorer
from lsqlab.widgets.training_monitor import TrainingMonitor

__all__ = ["AdjointExplorer", "DampingExplorer", "ManifoldExplorer", "SolverExplorer", "TrainingMonitor"]
