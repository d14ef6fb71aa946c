"""Figure plumbing shared by the widgets: a live ``FigureWidget`` where it works, else a static redraw.

In JupyterLab 4 and Notebook 7 a widget's figure is a :class:`LiveFigure` (a plotly ``FigureWidget``)
updated in place. Where that cannot work (plotly's widget needs ``anywidget``; Colab does not render
it) the same figure is kept as a plain ``go.Figure`` and redrawn as a static plotly output inside an
``ipywidgets.Output``. :func:`computing` marks a widget's recomputations in its status line.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from copy import deepcopy
from typing import Any, TypeVar

import ipywidgets as widgets
import plotly.graph_objects as go
import plotly.io as pio

from lsqlab_jupyter import figure_module, served_route


# Messages that set (idempotent) or add, remove and reorder traces (not idempotent) in every view.
SETTING_MESSAGES = frozenset({"_py2js_restyle", "_py2js_relayout", "_py2js_update", "_py2js_animate"})
TRACE_LIST_MESSAGES = frozenset({"_py2js_addTraces", "_py2js_deleteTraces", "_py2js_moveTraces"})
BUSY_HTML = '<span style="color:#555">⏳ computing…</span>'

Method = TypeVar("Method", bound=Callable[..., Any])


class LiveFigure(go.FigureWidget):
    """A ``FigureWidget`` whose synced state always holds the figure as it is now.

    plotly syncs a ``FigureWidget``'s data and layout (``_widget_data``, ``_widget_layout``) only when
    it is built or displayed by itself, never when it sits in a ``VBox``; every later change travels as
    a one-off restyle/relayout/update message that views existing at that moment apply. A view made
    later (Run All before the output is drawn, Notebook 7, a page reload, the same widget shown again)
    drew the figure as it was built: axes without data. Here the current state goes out before each
    such message, so a view made at any moment draws the state and applies the messages after it; and
    again after it, because plotly's page-side model applies an update that leaves some traces'
    properties unset (a batch setting one trace's name) as ``null``, which wiped those names in views
    made later. Messages that add, remove or move traces are followed by the state only.

    Under a Jupyter server with :mod:`lsqlab_jupyter` its front-end code is a four-line module that
    imports plotly's bundle from the server, instead of the 5 MB bundle itself in every figure's state.
    """

    if served_route() is not None:  # else plotly's own (plotly 5, as on Colab, has none)
        _esm = figure_module(served_route())

    def notify_change(self, change: dict) -> None:
        name, message = change["name"], change["new"] is not None
        if message and name in SETTING_MESSAGES:
            self._sync_state()
        super().notify_change(change)
        if message and name in SETTING_MESSAGES:
            self.send_state(["_widget_data", "_widget_layout"])
        elif message and name in TRACE_LIST_MESSAGES:
            self._sync_state()

    @staticmethod
    def _remove_overlapping_props(input_data: dict, delta_data: dict, prop_path: tuple = ()) -> list:
        """Keep every property set from Python. plotly drops those that a view reports among its
        defaults (a trace's ``name`` among them, seen in JupyterLab): the synced state would then lose
        them, and a view made later would draw "trace 2" in the legend."""
        return []

    def _sync_state(self) -> None:
        """Send the figure's current data and layout as the widget's state (as plotly does on display)."""
        self._widget_layout = deepcopy(self._layout_obj._props)
        self._widget_data = deepcopy(self._data)


def live_or_static(figure: go.Figure, live: bool | None) -> tuple[go.Figure, widgets.Output | None]:
    """``(LiveFigure, None)`` where a live figure works, else ``(figure, Output for its redraws)``.

    ``live``: True tries the live figure, False forces the static redraw, None: live outside Colab.
    """
    if live is None:
        live = "google.colab" not in sys.modules
    if live:
        try:
            return LiveFigure(figure), None
        except ImportError:  # plotly >= 6 builds FigureWidget on anywidget
            pass
    return figure, widgets.Output()


def static_output(figure: go.Figure) -> dict:
    """A display-data output of ``figure``: plotly's mime type for Jupyter, HTML for Colab."""
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "application/vnd.plotly.v1+json": json.loads(pio.to_json(figure)),
            "text/html": pio.to_html(figure, include_plotlyjs="cdn", full_html=False),
        },
    }


def redraw_static(figure: go.Figure, static_view: widgets.Output | None) -> None:
    """After an in-place update: re-render ``figure`` into ``static_view`` (nothing to do when live).

    Inside an open ``figure.batch_update()`` it does nothing: the changes are applied when the
    outermost block ends, and its caller redraws then.
    """
    if static_view is not None and not figure._in_batch_mode:
        static_view.outputs = (static_output(figure),)


def message_html(text: str) -> str:
    """A red HTML line for a widget's message area ("" clears it)."""
    return f'<span style="color:#b00020">{text}</span>' if text else ""


def status_line() -> widgets.HTML:
    """The line where a widget says that it is computing (see :func:`computing`)."""
    return widgets.HTML(layout=widgets.Layout(min_height="1.5em"))


def computing(method: Method) -> Method:
    """Decorate a widget's recomputation: ``self.status`` reads "computing…" while it runs.

    The kernel sends the text before it starts the work, so the page shows it for as long as the
    kernel is busy; nested calls (one handler calling another) leave it to the outermost one.
    """

    @functools.wraps(method)
    def marked(self, *args, **kwargs):
        if self.status.value == BUSY_HTML:
            return method(self, *args, **kwargs)
        self.status.value = BUSY_HTML
        try:
            return method(self, *args, **kwargs)
        finally:
            self.status.value = ""

    return marked  # type: ignore[return-value]
