"""``SolverExplorer``: LSMR beside CGLS on a problem whose shape and condition number the user sets.

Three log-scale panels against the iteration count: ||r_k||, ||A^T r_k|| and the error
||x_k - x*|| / ||x*||, one curve per solver, and a readout of where each solver's stop test holds and
why. The mathematics lives in :mod:`lsqlab.convergence`.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lsqlab.convergence import SOLVERS, check_problem_size, compare_solvers, conditioned_problem
from lsqlab.widgets.figures import live_or_static, message_html, redraw_static

PANELS = ("normr", "normar", "error")
PANEL_TITLES = ("‖r_k‖", "‖Aᵀr_k‖", "‖x_k − x*‖ / ‖x*‖")
COLORS = {"LSMR": "#1f77b4", "CGLS": "#d62728"}


def trace_index(solver: str, panel: str) -> int:
    """Index in ``figure.data`` of ``solver``'s curve in ``panel`` (one of ``PANELS``)."""
    return PANELS.index(panel) * len(SOLVERS) + SOLVERS.index(solver)


class SolverExplorer(widgets.VBox):
    """Controls for the shape, cond(A), iterations and tolerance; the three panels; a stop-reason readout."""

    def __init__(self, *, rows: int = 300, cols: int = 100, cond: float = 100.0, iterations: int = 200,
                 tol: float = 1e-8, seed: int = 0, live: bool | None = None):
        """``live``: True tries the live figure, False forces the static redraw, None: live outside Colab."""
        self.seed = seed
        self.rows = widgets.IntText(value=rows, description="rows m")
        self.cols = widgets.IntText(value=cols, description="columns n")
        self.cond = widgets.FloatText(value=cond, description="cond(A)")
        self.iterations = widgets.IntSlider(value=iterations, min=1, max=1000, description="iterations")
        self.tol = widgets.FloatLogSlider(value=tol, base=10, min=-14, max=-1, step=0.5,
                                          description="tolerance", readout_format=".0e")
        self.message = widgets.HTML()
        self.readout = widgets.HTML()
        self.figure, self.static_view = live_or_static(_convergence_figure(), live)
        view = self.figure if self.static_view is None else self.static_view
        controls = widgets.HBox([widgets.VBox([self.rows, self.cols, self.cond]),
                                 widgets.VBox([self.iterations, self.tol])])
        super().__init__([controls, self.message, view, self.readout])
        self._problem = None
        for control in (self.rows, self.cols, self.cond):
            control.observe(self._on_problem_change, names="value")
        for control in (self.iterations, self.tol):
            control.observe(self._on_solve_change, names="value")
        self._on_problem_change()

    @property
    def is_live(self) -> bool:
        """Whether the figure is a live ``FigureWidget`` (else a static redraw in an ``Output``)."""
        return self.static_view is None

    def _on_problem_change(self, change: dict | None = None) -> None:
        m, n, cond = self.rows.value, self.cols.value, self.cond.value
        try:
            check_problem_size(m, n, cond)
        except ValueError as error:
            self.message.value = message_html(f"{error}; the plot shows the last valid problem.")
            return
        self._problem = conditioned_problem(m, n, cond, self.seed)
        self._on_solve_change()

    def _on_solve_change(self, change: dict | None = None) -> None:
        if self._problem is None:
            return
        curves = compare_solvers(self._problem, self.iterations.value, self.tol.value)
        steps = np.arange(1, self.iterations.value + 1)
        with self.figure.batch_update():
            for solver, solver_curves in curves.items():
                for panel in PANELS:
                    trace = self.figure.data[trace_index(solver, panel)]
                    trace.x, trace.y = steps, getattr(solver_curves, panel)
        m, n = self._problem.A.shape
        self.message.value = ""
        self.readout.value = f"A is {m} × {n}, cond(A) = {self.cond.value:.3g}<br>" + "<br>".join(
            f"<b>{solver}</b>: " + (
                f"stops at iteration {c.stop_iteration}: {c.stop_reason}" if c.stop_iteration else c.stop_reason
            ) + f"; final error {c.error[-1]:.2e}"
            for solver, c in curves.items()
        )
        redraw_static(self.figure, self.static_view)


def _convergence_figure() -> go.Figure:
    """Three log-y panels with one (empty) curve per solver each, in the order of ``trace_index``."""
    figure = make_subplots(rows=1, cols=3, subplot_titles=PANEL_TITLES, horizontal_spacing=0.08)
    for column, panel in enumerate(PANELS, start=1):
        for solver in SOLVERS:
            figure.add_scatter(x=[], y=[], mode="lines", name=solver, legendgroup=solver,
                               showlegend=panel == PANELS[0], line=dict(color=COLORS[solver]),
                               row=1, col=column)
        figure.update_yaxes(type="log", exponentformat="power", row=1, col=column)
        figure.update_xaxes(title_text="iteration k", row=1, col=column)
    figure.update_layout(height=360, margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h", y=1.15))
    return figure
