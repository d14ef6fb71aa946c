"""``DampingExplorer``: a log slider for the damping lambda driving a plot of the damped RBF fit.

The mathematics lives in :mod:`lsqlab.regression`; this module only wires a slider, a figure and a
readout. In JupyterLab 4 and Notebook 7 the figure is a live ``plotly`` ``FigureWidget`` updated in
place. Where that cannot work (plotly's widget needs ``anywidget``; Colab does not render it) the same
figure is redrawn as a static plotly output inside an ``ipywidgets.Output``.
"""

from __future__ import annotations

import json
import sys

import ipywidgets as widgets
import plotly.graph_objects as go
import plotly.io as pio

from lsqlab.regression import RegressionProblem, fit_damped, true_signal

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
        self.figure, self.static_view = _live_or_static(_damping_figure(problem), live)
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
        if self.static_view is not None:
            self.static_view.outputs = (_static_output(self.figure),)


def _live_or_static(figure: go.Figure, live: bool | None) -> tuple[go.Figure, widgets.Output | None]:
    """``(FigureWidget, None)`` where a live figure works, else ``(figure, Output for its redraws)``."""
    if live is None:
        live = "google.colab" not in sys.modules
    if live:
        try:
            return go.FigureWidget(figure), None
        except ImportError:  # plotly >= 6 builds FigureWidget on anywidget
            pass
    return figure, widgets.Output()


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


def _static_output(figure: go.Figure) -> dict:
    """A display-data output of ``figure``: plotly's mime type for Jupyter, HTML for Colab."""
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "application/vnd.plotly.v1+json": json.loads(pio.to_json(figure)),
            "text/html": pio.to_html(figure, include_plotlyjs="cdn", full_html=False),
        },
    }
