"""``DampingExplorer``: a log slider for the damping lambda driving a plot of the damped RBF fit.

The mathematics lives in :mod:`lsqlab.lab.regression`; this module only wires a slider, a figure and a
readout; :mod:`lsqlab.widgets.figures` makes the figure live or, where that cannot work (Colab), a
static redraw.
"""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go

from lsqlab.lab.regression import RegressionProblem, fit_damped, true_signal
from lsqlab.widgets.figures import live_or_static, redraw_static

FIT_TRACE = 1  # index of the fitted curve in ``figure.data``


class DampingExplorer(widgets.VBox):
    """Slider for lambda, the training data with the fitted curve, and a readout of ||w|| and the error."""

    def __init__(self, problem: RegressionProblem, *, damp: float = 1e-3, live: bool | None = None):
        """``live``: True tries the live figure, False forces the static redraw, None: live outside Colab."""
        self.problem = problem
        self.slider = widgets.FloatLogSlider(
            value=damp, base=10, min=-4, max=1, step=0.1, description="λ", readout_format=".1e",
        )
        self.readout = widgets.HTML()
        self.figure, self.static_view = live_or_static(_damping_figure(problem), live)
        view = self.figure if self.static_view is None else self.static_view
        super().__init__([self.slider, view, self.readout])
        self.slider.observe(self._on_damp_change, names="value")
        self._show(self.slider.value)

    @property
    def is_live(self) -> bool:
        """Whether the figure is a live ``FigureWidget`` (else a static redraw in an ``Output``)."""
        return self.static_view is None

    def _on_damp_change(self, change: dict) -> None:
        self._show(change["new"])

    def _show(self, damp: float) -> None:
        fit = fit_damped(self.problem, damp)
        with self.figure.batch_update():
            self.figure.data[FIT_TRACE].y = fit.curve
        self.readout.value = (
            f"λ = {damp:.2e} &nbsp; ‖w‖ = {fit.weight_norm:.3g} &nbsp; "
            f"held-out RMSE = {fit.held_out_error:.3f}"
        )
        redraw_static(self.figure, self.static_view)


def _damping_figure(problem: RegressionProblem) -> go.Figure:
    """Training points, the fitted curve (trace ``FIT_TRACE``, filled in later) and the true signal."""
    figure = go.Figure(layout=dict(
        height=380, margin=dict(l=40, r=20, t=30, b=40), xaxis_title="x", yaxis_title="y",
        yaxis_range=[-2.5, 2.5], legend=dict(orientation="h", y=1.08),
    ))
    figure.add_scatter(x=problem.x_train, y=problem.y_train, mode="markers", name="training data")
    figure.add_scatter(x=problem.x_grid, y=0 * problem.x_grid, mode="lines", name="damped fit")
    figure.add_scatter(
        x=problem.x_grid, y=true_signal(problem.x_grid), mode="lines", name="true signal",
        line=dict(dash="dot", color="gray"),
    )
    return figure
