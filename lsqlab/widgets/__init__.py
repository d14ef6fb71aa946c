"""Interactive views for the notebooks: thin ipywidgets over the plain functions in :mod:`lsqlab`."""

from lsqlab.widgets.damping import DampingExplorer

__all__ = ["DampingExplorer"]
