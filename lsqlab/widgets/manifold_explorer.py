"""``ManifoldExplorer``: the null-space step on a curve or surface c(theta) = 0, beside two alternatives.

Over the contours of a quadratic loss it draws the constraint set, the trajectories of the null-space
method, of quadratic-penalty descent and of tangent-only projected descent, and at one iterate of the
null-space trajectory the raw update -eta grad f, its tangent part (I - J^+ J)u, the normal correction
-gamma J^+ c (drawn from the tip of the tangent part) and the resulting step. Curves (2-D) and surfaces
(3-D) have a figure each; the one for the chosen manifold is shown. The mathematics lives in
:mod:`lsqlab.lab.geometry`.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from lsqlab.lab.geometry import (
    BOX, LOSSES, MANIFOLDS, MAX_STEPS, METHODS, Manifold, check_start, check_step, descend, grid_values,
    step_parts, user_manifold,
)
from lsqlab.widgets.figures import computing, live_or_static, message_html, redraw_static, status_line

USER_CURVE, USER_SURFACE = "user curve", "user surface"
CHOICES = ("circle", "ellipse", USER_CURVE, "sphere", "torus", USER_SURFACE)
DIMENSION = {USER_CURVE: 2, USER_SURFACE: 3} | {name: m.dim for name, m in MANIFOLDS.items()}
DEFAULT_EXPRESSION = {2: "x**2 + y**2 + 0.3*sin(4*x) - 1", 3: "x**2 + y**2 - z**2/4 - 0.5"}
DEFAULT_START = (-1.5, -1.2, 0.3)
GRID_POINTS = {2: 120, 3: 30}

LOSS_TRACE, CONSTRAINT_TRACE = 0, 1  # 2-D: loss contours; 3-D: the loss minimum. Then c = 0.
TRAJECTORY_TRACE = {method: 2 + i for i, method in enumerate(METHODS)}
ARROWS = ("raw", "tangent", "normal", "step")
ARROW_TRACE = {part: 5 + i for i, part in enumerate(ARROWS)}
CURRENT_TRACE = 9
ARROW_NAMES = {"raw": "−η∇f", "tangent": "(I − J⁺J)u", "normal": "−γJ⁺c", "step": "step"}
COLORS = {"null-space": "#1f77b4", "penalty": "#ff7f0e", "tangent only": "#7f7f7f",
          "raw": "#2ca02c", "tangent": "#9467bd", "normal": "#d62728", "step": "#000000"}
DIVERGED = 1e3  # iterates beyond this are not drawn


class ManifoldExplorer(widgets.VBox):
    """Controls for the manifold, step size, gamma, penalty weight, steps and start point; two figures."""

    def __init__(self, manifold: str = "circle", *, step: float = 0.1, gamma: float = 0.5, penalty: float = 2.0,
                 steps: int = 30, start: tuple[float, ...] = DEFAULT_START, live: bool | None = None):
        """``live``: True tries live figures, False forces static redraws, None: live outside Colab."""
        self.steps = widgets.IntSlider(value=steps, min=0, max=MAX_STEPS, description="steps")
        self.shown_step = widgets.IntSlider(value=0, min=0, max=steps, description="show step")
        self.gamma = widgets.FloatSlider(value=gamma, min=0.0, max=1.0, step=0.05, description="γ")
        self.penalty = widgets.FloatLogSlider(value=penalty, base=10, min=-1, max=2, step=0.1,
                                              description="penalty μ")
        self.step_size = widgets.FloatText(value=step, description="step η")
        self.manifold = widgets.Dropdown(options=CHOICES, value=manifold, description="manifold")
        self.expression = widgets.Text(value=DEFAULT_EXPRESSION[DIMENSION[manifold]], description="c(x, y, z) =",
                                       continuous_update=False)
        self.start = [widgets.FloatText(value=v, description=f"start {name}", layout=widgets.Layout(width="160px"))
                      for v, name in zip(start + DEFAULT_START[len(start):], "xyz")]
        self.status, self.message = status_line(), widgets.HTML()
        self.readout = widgets.HTML()
        self.figures, self.static_views, self._boxes = {}, {}, {}
        for dim, make in ((2, _plane_figure), (3, _space_figure)):
            self.figures[dim], self.static_views[dim] = live_or_static(make(), live)
            view = self.figures[dim] if self.static_views[dim] is None else self.static_views[dim]
            self._boxes[dim] = widgets.Box([view])
        controls = widgets.HBox([
            widgets.VBox([self.steps, self.shown_step, self.gamma, self.penalty]),
            widgets.VBox([self.manifold, self.expression, self.step_size]),
            widgets.VBox(self.start),
        ])
        super().__init__([controls, self.status, self.message, self._boxes[2], self._boxes[3], self.readout])
        self._current: Manifold | None = None
        self.manifold.observe(self._on_manifold_change, names="value")
        self.expression.observe(self._on_manifold_change, names="value")
        for control in (self.steps, self.shown_step, self.gamma, self.penalty, self.step_size, *self.start):
            control.observe(self._on_setting_change, names="value")
        self._on_manifold_change()

    @property
    def is_live(self) -> bool:
        """Whether the figures are live ``FigureWidget`` s (else static redraws in ``Output`` s)."""
        return self.static_views[2] is None

    @property
    def dim(self) -> int:
        return DIMENSION[self.manifold.value]

    @property
    def figure(self) -> go.Figure:
        """The figure of the chosen manifold's dimension."""
        return self.figures[self.dim]

    @computing
    def _on_manifold_change(self, change: dict | None = None) -> None:
        choice, dim = self.manifold.value, self.dim
        for d, box in self._boxes.items():
            box.layout.display = None if d == dim else "none"
        self.start[2].disabled = dim == 2
        self.expression.disabled = choice not in (USER_CURVE, USER_SURFACE)
        if choice in (USER_CURVE, USER_SURFACE):
            if change is not None and change["owner"] is self.manifold and not _readable(self.expression.value, dim):
                self.expression.value = DEFAULT_EXPRESSION[dim]  # observed: comes back here
                return
            try:
                manifold = user_manifold(self.expression.value, dim)
            except ValueError as error:
                self.message.value = message_html(f"{error}; the plot shows the last valid manifold.")
                return
        else:
            manifold = MANIFOLDS[choice]
        self._current = manifold
        c, loss = grid_values(manifold, GRID_POINTS[dim])
        axis = np.linspace(-BOX, BOX, GRID_POINTS[dim])
        figure = self.figures[dim]
        with figure.batch_update():  # one update: the surface and the paths on it appear together
            if dim == 2:  # contour z is indexed [y, x]
                figure.data[LOSS_TRACE].update(x=axis, y=axis, z=loss.T)
                figure.data[CONSTRAINT_TRACE].update(x=axis, y=axis, z=c.T, name=manifold.name)
            else:
                grid = np.meshgrid(axis, axis, axis, indexing="ij")
                figure.data[CONSTRAINT_TRACE].update(x=grid[0].ravel(), y=grid[1].ravel(), z=grid[2].ravel(),
                                                     value=c.ravel(), name=manifold.name)
            self._on_setting_change()
        redraw_static(figure, self.static_views[dim])

    @computing
    def _on_setting_change(self, change: dict | None = None) -> None:
        if self._current is None:
            return
        dim = self._current.dim
        start = np.array([control.value for control in self.start[:dim]])
        self.shown_step.max = self.steps.value
        try:
            check_step(self.step_size.value, self.gamma.value, self.penalty.value)
            check_start(self._current, start)
        except ValueError as error:
            self.message.value = message_html(f"{error}; the plot shows the last valid setting.")
            return
        paths = descend(self._current, start, self.steps.value, self.step_size.value, self.gamma.value,
                        self.penalty.value)
        theta = paths.null_space[self.shown_step.value]
        diverged = [method for method, path in paths.by_method().items() if not _stays_bounded(path)]
        parts = None
        if _stays_bounded(theta[None]):
            parts = step_parts(self._current, theta, self.step_size.value, self.gamma.value)
        self._draw(dim, paths, theta, parts)
        self.message.value = message_html(
            f"diverges: {', '.join(diverged)}; reduce the step η (or μ)" if diverged else "",
        )
        self.readout.value = _summary(self._current, paths, self.shown_step.value)
        redraw_static(self.figures[dim], self.static_views[dim])

    def _draw(self, dim: int, paths, theta: np.ndarray, parts) -> None:
        figure = self.figures[dim]
        with figure.batch_update():
            for method, path in paths.by_method().items():
                _set_points(figure.data[TRAJECTORY_TRACE[method]], _clipped(path))
            _set_points(figure.data[CURRENT_TRACE], theta[None])
            for part in ARROWS:
                if parts is None:
                    segment = np.full((2, dim), np.nan)
                else:
                    tail = theta + parts.tangent if part == "normal" else theta
                    segment = np.stack([tail, tail + getattr(parts, part)])
                _set_points(figure.data[ARROW_TRACE[part]], segment)


def _readable(expression: str, dim: int) -> bool:
    try:
        user_manifold(expression, dim)
    except ValueError:
        return False
    return True


def _stays_bounded(path: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(path)) and np.max(np.abs(path)) < DIVERGED)


def _clipped(path: np.ndarray) -> np.ndarray:
    """The path with diverged iterates replaced by NaN (plotly leaves a gap)."""
    bad = ~np.isfinite(path).all(axis=1) | (np.abs(np.nan_to_num(path, nan=np.inf)).max(axis=1) >= DIVERGED)
    return np.where(bad[:, None], np.nan, path)


def _set_points(trace, points: np.ndarray) -> None:
    coordinates = dict(zip("xyz", points.T))
    trace.update(**coordinates)


def _summary(manifold: Manifold, paths, shown: int) -> str:
    loss = LOSSES[manifold.dim]
    rows = []
    for method, path in paths.by_method().items():
        final = path[-1]
        if np.all(np.isfinite(final)):
            c = abs(float(manifold.scalar_constraint(final)))
            rows.append(f"<b>{method}</b>: |c| = {c:.1e}, f = {float(loss(final)):.4f}")
        else:
            rows.append(f"<b>{method}</b>: diverged")
    return (f"after {len(paths.null_space) - 1} steps — " + "; ".join(rows)
            + f"<br>shown: null-space iterate {shown}, |c| = {paths.violation[shown]:.2e}")


def _layout(**extra) -> dict:
    return dict(height=520, width=760, margin=dict(l=40, r=20, t=30, b=40), legend=dict(x=1.02, y=1), **extra)


def _plane_figure() -> go.Figure:
    """2-D: loss contours, c = 0, three trajectories, four arrows and the current point (trace constants above)."""
    figure = go.Figure(layout=_layout(
        xaxis=dict(range=[-BOX, BOX], title="x", constrain="domain"),
        yaxis=dict(range=[-BOX, BOX], title="y", scaleanchor="x", constrain="domain"),
    ))
    figure.add_contour(z=[[0]], colorscale="Blues", reversescale=True, opacity=0.5, showscale=False, name="loss f",
                       contours=dict(coloring="fill"), ncontours=25, hoverinfo="skip")
    figure.add_contour(z=[[0]], contours=dict(start=0, end=0, size=1, coloring="lines"), showscale=False,
                       line=dict(width=3, color="black"), colorscale=[[0, "black"], [1, "black"]], name="c = 0",
                       showlegend=True)
    for method in METHODS:
        figure.add_scatter(x=[], y=[], mode="lines+markers", name=method, marker=dict(size=4),
                           line=dict(color=COLORS[method], dash="dot" if method != "null-space" else "solid"))
    for part in ARROWS:
        figure.add_scatter(x=[], y=[], mode="lines+markers", name=ARROW_NAMES[part],
                           line=dict(color=COLORS[part], width=3),
                           marker=dict(symbol=["circle", "arrow"], size=[2, 14], angleref="previous"))
    figure.add_scatter(x=[], y=[], mode="markers", name="shown iterate",
                       marker=dict(size=10, color="black", symbol="x"))
    return figure


def _space_figure() -> go.Figure:
    """3-D: the loss minimum, the surface c = 0, trajectories, arrows and the current point (same indices)."""
    figure = go.Figure(layout=_layout(scene=dict(
        xaxis=dict(range=[-BOX, BOX]), yaxis=dict(range=[-BOX, BOX]), zaxis=dict(range=[-BOX, BOX]),
        aspectmode="cube",
    )))
    center = LOSSES[3].center
    figure.add_scatter3d(x=[center[0]], y=[center[1]], z=[center[2]], mode="markers", name="loss minimum",
                         marker=dict(size=5, color="#17becf"))
    figure.add_isosurface(x=[0], y=[0], z=[0], value=[0], isomin=0, isomax=0, surface_count=1, opacity=0.35,
                          showscale=False, colorscale=[[0, "#aaaaaa"], [1, "#aaaaaa"]], caps=dict(x_show=False,
                          y_show=False, z_show=False), name="c = 0", showlegend=True, hoverinfo="skip")
    for method in METHODS:
        figure.add_scatter3d(x=[], y=[], z=[], mode="lines+markers", name=method, marker=dict(size=2),
                             line=dict(color=COLORS[method], width=4))
    for part in ARROWS:
        figure.add_scatter3d(x=[], y=[], z=[], mode="lines+markers", name=ARROW_NAMES[part],
                             line=dict(color=COLORS[part], width=6), marker=dict(size=[1, 5], color=COLORS[part]))
    figure.add_scatter3d(x=[], y=[], z=[], mode="markers", name="shown iterate", marker=dict(size=5, color="black"))
    return figure
