"""``SolverExplorer``: LSMR beside CGLS on a problem whose shape and condition number the user sets.

Three log-scale panels against the iteration count: ||r_k||, ||A^T r_k|| and the error
||x_k - x*|| / ||x*||, one curve per solver, a marker where each solver's stop test (at the chosen
tolerance) first holds, and a readout of that iteration, the error there and the reason. A
preconditioner menu runs both solvers on A P (none, Jacobi, sketch); a button sweeps cond(A) and plots
LSMR's iterations to the tolerance with each preconditioner. The mathematics lives in
:mod:`lsqlab.lab.convergence`.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lsqlab.lab.convergence import (
    PRECONDITIONERS, SOLVERS, ConvergenceCurves, check_preconditioner, check_problem_size, compare_solvers,
    conditioned_problem, iterations_against_condition,
)
from lsqlab.widgets.figures import computing, live_or_static, message_html, redraw_static, status_line
from lsqlab.widgets.layout import fit_page

PANELS = ("normr", "normar", "error")
PANEL_TITLES = ("‖r_k‖", "‖Aᵀr_k‖", "‖x_k − x*‖ / ‖x*‖")
COLORS = {"LSMR": "#1f77b4", "CGLS": "#d62728"}
PRECONDITIONER_COLORS = {"none": "#1f77b4", "Jacobi": "#ff7f0e", "sketch": "#2ca02c"}
SWEEP_CONDS = np.logspace(0, 10, 11)


def trace_index(solver: str, panel: str) -> int:
    """Index in ``figure.data`` of ``solver``'s curve in ``panel`` (one of ``PANELS``)."""
    return PANELS.index(panel) * len(SOLVERS) + SOLVERS.index(solver)


def stop_index(solver: str, panel: str) -> int:
    """Index in ``figure.data`` of the marker where ``solver``'s stop test first holds, in ``panel``."""
    return len(PANELS) * len(SOLVERS) + trace_index(solver, panel)


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
        self.preconditioner = widgets.Dropdown(options=PRECONDITIONERS, value="none", description="preconditioner")
        self.sweep_button = widgets.Button(description="iterations against cond(A)", layout=dict(width="auto"))
        self.status, self.message = status_line(), widgets.HTML()
        self.readout = widgets.HTML()
        self.figure, self.static_view = live_or_static(_convergence_figure(), live)
        self.sweep_figure, self.sweep_static_view = live_or_static(_sweep_figure(), live)
        view = self.figure if self.static_view is None else self.static_view
        sweep_view = self.sweep_figure if self.sweep_static_view is None else self.sweep_static_view
        controls = widgets.HBox([widgets.VBox([self.rows, self.cols, self.cond]),
                                 widgets.VBox([self.iterations, self.tol, self.preconditioner])])
        super().__init__([controls, self.status, self.message, view, self.readout, self.sweep_button, sweep_view])
        self._problem = None
        for control in (self.rows, self.cols, self.cond):
            control.observe(self._on_problem_change, names="value")
        for control in (self.iterations, self.tol, self.preconditioner):
            control.observe(self._on_solve_change, names="value")
        self.sweep_button.on_click(self._on_sweep)
        self._on_problem_change()

    @property
    def is_live(self) -> bool:
        """Whether the figure is a live ``FigureWidget`` (else a static redraw in an ``Output``)."""
        return self.static_view is None

    @computing
    def _on_problem_change(self, change: dict | None = None) -> None:
        m, n, cond = self.rows.value, self.cols.value, self.cond.value
        try:
            check_problem_size(m, n, cond)
        except ValueError as error:
            self.message.value = message_html(f"{error}; the plot shows the last valid problem.")
            return
        self._problem = conditioned_problem(m, n, cond, self.seed)
        self._on_solve_change()

    @computing
    def _on_solve_change(self, change: dict | None = None) -> None:
        if self._problem is None:
            return
        m, n = self._problem.A.shape
        try:
            check_preconditioner(self.preconditioner.value, m, n)
        except ValueError as error:
            self.message.value = message_html(f"{error}; the plot shows the last valid choice.")
            return
        curves = compare_solvers(self._problem, self.iterations.value, self.tol.value,
                                 self.preconditioner.value, self.seed)
        steps = np.arange(1, self.iterations.value + 1)
        with self.figure.batch_update():
            for solver, solver_curves in curves.items():
                stop = solver_curves.stop_iteration
                for panel in PANELS:
                    values = getattr(solver_curves, panel)
                    trace = self.figure.data[trace_index(solver, panel)]
                    trace.x, trace.y = steps, values
                    marker = self.figure.data[stop_index(solver, panel)]
                    marker.x, marker.y = ([stop], [values[stop - 1]]) if stop else ([], [])
        self.message.value = ""
        self.readout.value = (f"A is {m} × {n}, cond(A) = {self.cond.value:.3g}, tolerance {self.tol.value:.0e}, "
                              f"preconditioner: {self.preconditioner.value}<br>") + "<br>".join(
            f"<b>{solver}</b>: {_stop_summary(c)}" for solver, c in curves.items()
        )
        redraw_static(self.figure, self.static_view)

    @computing
    def _on_sweep(self, button: widgets.Button | None = None) -> None:
        """LSMR iterations to error <= tol against cond(A) on the current shape, one curve per preconditioner."""
        if self._problem is None:
            return
        m, n = self._problem.A.shape
        counts = iterations_against_condition(m, n, SWEEP_CONDS, self.tol.value, self.iterations.value, seed=self.seed)
        with self.sweep_figure.batch_update():
            for trace, name in zip(self.sweep_figure.data, PRECONDITIONERS):
                trace.x, trace.y = SWEEP_CONDS, counts[name]
            self.sweep_figure.layout.title.text = (
                f"LSMR iterations to error ≤ {self.tol.value:.0e} ({m} × {n}, at most {self.iterations.value}; "
                "gaps: not reached)")
        redraw_static(self.sweep_figure, self.sweep_static_view)


def _stop_summary(curves: ConvergenceCurves) -> str:
    """Where the stop test first holds and the error there (the marker drawn), else the last error."""
    if curves.stop_iteration is None:
        return f"{curves.stop_reason}; error after {len(curves.error)} iterations {curves.error[-1]:.2e}"
    error = curves.error[curves.stop_iteration - 1]
    return f"stops at iteration {curves.stop_iteration} with error {error:.2e}: {curves.stop_reason}"


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
    for column, panel in enumerate(PANELS, start=1):  # after all curves: indices from ``stop_index``
        for solver in SOLVERS:
            figure.add_scatter(x=[], y=[], mode="markers", name=f"{solver} stops", legendgroup=solver,
                               showlegend=panel == PANELS[0], row=1, col=column,
                               marker=dict(symbol="x-thin-open", size=14, color=COLORS[solver], line_width=3))
    figure.update_layout(height=360, margin=dict(l=50, r=20, t=40, b=40))
    return fit_page(figure)


def _sweep_figure() -> go.Figure:
    """Iterations against cond(A) (log x), one (empty) curve per preconditioner, in ``PRECONDITIONERS`` order."""
    figure = go.Figure()
    for name in PRECONDITIONERS:
        figure.add_scatter(x=[], y=[], mode="lines+markers", name=name, line=dict(color=PRECONDITIONER_COLORS[name]))
    figure.update_xaxes(type="log", exponentformat="power", title_text="cond(A)")
    figure.update_yaxes(title_text="iterations")
    figure.update_layout(height=320, margin=dict(l=50, r=20, t=40, b=40),
                         title_text="press the button to sweep cond(A)")
    return figure
