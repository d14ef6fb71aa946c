"""``AdjointExplorer``: the error and cost of a gradient through a solve, as tolerance and rank change.

Left: relative error of the directional derivative against the solver tolerance for the adjoint rule,
unrolled differentiation and finite differences; right: wall time of each. Controls set the rank and
condition number of A, the finite-difference step, ``assume_full_rank`` and the tolerance read out.
The mathematics lives in :mod:`lsqlab.lab.gradient_accuracy`; each tolerance compiles the adjoint once
(about 3 s here), so the first drawing takes a while and later moves are fast. The times drawn exclude
compilation: each is the median of a few calls after a warm-up call.
"""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lsqlab.lab.gradient_accuracy import (
    METHODS, SOLVES, TIMED_REPEATS, TOLERANCES, check_settings, gradient_problem, measure,
)
from lsqlab.widgets.figures import computing, live_or_static, message_html, redraw_static, status_line
from lsqlab.widgets.layout import fit_page

COLORS = {"adjoint": "#1f77b4", "unrolled": "#2ca02c", "finite differences": "#d62728"}
CURRENT_TRACE = 2 * len(METHODS)  # markers at the chosen tolerance on the error panel
TIME_TICKS = tuple(m * 10.0**k for k in range(-3, 6) for m in (1, 3))  # ms: two labelled ticks a decade


def error_trace(method: str) -> int:
    return METHODS.index(method)


def time_trace(method: str) -> int:
    return len(METHODS) + METHODS.index(method)


class AdjointExplorer(widgets.VBox):
    """Controls for rank, cond, h, ``assume_full_rank`` and the read-out tolerance; two panels; a table."""

    def __init__(self, *, rows: int = 60, cols: int = 30, rank: int | None = None, cond: float = 100.0,
                 h: float = 1e-6, tolerances: tuple[float, ...] = TOLERANCES, live: bool | None = None):
        """``live``: True tries the live figure, False forces the static redraw, None: live outside Colab."""
        self.shape, self.tolerances = (rows, cols), tuple(tolerances)
        self.rank = widgets.IntText(value=rank or min(rows, cols), description="rank of A")
        self.cond = widgets.FloatLogSlider(value=cond, base=10, min=0, max=8, step=0.5, description="cond",
                                           readout_format=".0e")
        self.h = widgets.FloatText(value=h, description="FD step h")
        self.full_rank = widgets.Checkbox(value=True, description="assume_full_rank")
        self.tol = widgets.SelectionSlider(options=[(f"{t:.0e}", t) for t in self.tolerances],
                                           value=self.tolerances[len(self.tolerances) // 2], description="tolerance")
        self.status, self.message = status_line(), widgets.HTML()
        self.readout = widgets.HTML()
        self.figure, self.static_view = live_or_static(_accuracy_figure(), live)
        view = self.figure if self.static_view is None else self.static_view
        controls = widgets.HBox([widgets.VBox([self.rank, self.cond, self.tol]),
                                 widgets.VBox([self.h, self.full_rank])])
        super().__init__([controls, self.status, self.message, view, self.readout])
        self._measurement = None
        for control in (self.rank, self.cond, self.h, self.full_rank):
            control.observe(self._on_setting_change, names="value")
        self.tol.observe(self._on_tolerance_change, names="value")
        self._on_setting_change()

    @property
    def is_live(self) -> bool:
        return self.static_view is None

    @computing
    def _on_setting_change(self, change: dict | None = None) -> None:
        try:
            check_settings(*self.shape, self.rank.value, self.cond.value, self.h.value)
        except ValueError as error:
            self.message.value = message_html(f"{error}; the plot shows the last valid setting.")
            return
        problem = gradient_problem(*self.shape, self.rank.value, self.cond.value)
        self._measurement = measure(problem, self.h.value, assume_full_rank=self.full_rank.value,
                                    tolerances=self.tolerances)
        with self.figure.batch_update():
            for method in METHODS:
                self.figure.data[error_trace(method)].update(x=self.tolerances, y=self._measurement.error[method])
                self.figure.data[time_trace(method)].update(x=self.tolerances,
                                                            y=1e3 * self._measurement.seconds[method])
        self.message.value = ""
        self._on_tolerance_change()

    def _on_tolerance_change(self, change: dict | None = None) -> None:
        if self._measurement is None:
            return
        i = self.tolerances.index(self.tol.value)
        result = self._measurement
        with self.figure.batch_update():
            self.figure.data[CURRENT_TRACE].update(x=[self.tol.value] * len(METHODS),
                                                   y=[result.error[m][i] for m in METHODS])
        rows = "".join(
            f"<tr><td>{m}</td><td>{result.error[m][i]:.1e}</td><td>{1e3 * result.seconds[m][i]:.2f}</td>"
            f"<td>{SOLVES[m]}</td></tr>" for m in METHODS
        )
        m, n = self.shape
        self.readout.value = (
            f"A is {m} × {n} of rank {self.rank.value}; at tolerance {self.tol.value:.0e} the forward solve "
            f"took {result.iterations[i]} LSMR iterations."
            f"<table><tr><th>method</th><th>relative error</th><th>ms (median of {TIMED_REPEATS} calls after "
            f"compiling)</th><th>solves</th></tr>{rows}</table>"
        )
        redraw_static(self.figure, self.static_view)


def _accuracy_figure() -> go.Figure:
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "relative error of dL[E]", "ms per derivative (compilation excluded)"))
    for column in (1, 2):
        for method in METHODS:
            figure.add_scatter(x=[], y=[], mode="lines+markers", name=method, legendgroup=method,
                               showlegend=column == 1, line=dict(color=COLORS[method]), row=1, col=column)
        figure.update_xaxes(type="log", autorange="reversed", title_text="solver tolerance", exponentformat="power",
                            row=1, col=column)
    figure.update_yaxes(type="log", exponentformat="power", row=1, col=1)
    figure.update_yaxes(type="log", tickvals=TIME_TICKS, ticktext=[f"{t:g}" for t in TIME_TICKS], row=1, col=2)
    figure.add_scatter(x=[], y=[], mode="markers", name="chosen tolerance", marker=dict(size=12, color="black",
                       symbol="circle-open"), row=1, col=1)
    figure.update_layout(height=360, margin=dict(l=50, r=20, t=40, b=40))
    return fit_page(figure)
