"""``TrainingMonitor``: loss, constraint violation and solver iterations drawn live during training.

A training loop calls ``monitor.log(step, loss=..., violation=..., iterations=...)`` once per step; the
monitor keeps the history, moves a progress bar and redraws its panels in place every
``redraw_every`` steps (and at the last one), so that long runs do not spend their time drawing. A
non-finite value is reported in the widget (the run diverged) and not drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lsqlab.widgets.figures import live_or_static, message_html, redraw_static

METRICS = ("loss", "violation", "iterations")
TITLES = {"loss": "loss", "violation": "constraint violation ‖c(θ)‖", "iterations": "LSMR iterations per step"}
LOG_SCALE = ("loss", "violation")


class TrainingMonitor(widgets.VBox):
    """A progress bar, one panel per metric (trace i: metric i) and a readout of the latest values."""

    def __init__(self, total_steps: int, *, metrics: Sequence[str] = METRICS, redraw_every: int | None = None,
                 live: bool | None = None):
        """``redraw_every``: steps between redraws (None: about 50 redraws per run). ``live`` as elsewhere."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.metrics = tuple(metrics)
        self.total_steps = total_steps
        self.redraw_every = redraw_every or max(1, total_steps // 50)
        self.history: dict[str, list[float]] = {"step": [], **{name: [] for name in self.metrics}}
        self.progress = widgets.IntProgress(value=0, min=0, max=total_steps, description="step 0")
        self.message = widgets.HTML()
        self.readout = widgets.HTML()
        self.figure, self.static_view = live_or_static(_monitor_figure(self.metrics), live)
        view = self.figure if self.static_view is None else self.static_view
        super().__init__([self.progress, self.message, view, self.readout])

    @property
    def is_live(self) -> bool:
        return self.static_view is None

    def log(self, step: int, **values: float) -> None:
        """Record one step's metrics (every name in ``metrics``); redraw when due."""
        missing = set(self.metrics) - set(values)
        if missing:
            raise ValueError(f"missing metrics {sorted(missing)} at step {step}")
        values = {name: float(values[name]) for name in self.metrics}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            self.message.value = message_html(f"step {step}: {', '.join(bad)} is not finite (the run diverged)")
            return
        self.history["step"].append(step)
        for name, value in values.items():
            self.history[name].append(value)
        self.progress.value, self.progress.description = min(step + 1, self.total_steps), f"step {step + 1}"
        if (step + 1) % self.redraw_every == 0 or step + 1 >= self.total_steps:
            self.redraw()

    def redraw(self) -> None:
        """Draw the whole history now (``log`` calls this when due; call it after stopping early)."""
        with self.figure.batch_update():
            for index, name in enumerate(self.metrics):
                self.figure.data[index].x, self.figure.data[index].y = self.history["step"], self.history[name]
        if self.history["step"]:
            self.readout.value = f"step {self.history['step'][-1] + 1}: " + ", ".join(
                f"{name} = {self.history[name][-1]:.4g}" for name in self.metrics
            )
        redraw_static(self.figure, self.static_view)


def _monitor_figure(metrics: Sequence[str]) -> go.Figure:
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=[TITLES.get(m, m) for m in metrics])
    for column, name in enumerate(metrics, start=1):
        figure.add_scatter(x=[], y=[], mode="lines", name=name, showlegend=False, row=1, col=column)
        figure.update_xaxes(title_text="step", row=1, col=column)
        if name in LOG_SCALE:
            figure.update_yaxes(type="log", exponentformat="power", row=1, col=column)
    figure.update_layout(height=300, margin=dict(l=50, r=20, t=40, b=40))
    return figure
