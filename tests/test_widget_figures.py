"""The shared figure plumbing without a kernel: live figures keep their synced state current, and a
recomputation is marked in the widget's status line while it runs."""

import numpy as np

from lsqlab.widgets.figures import BUSY_HTML, LiveFigure
from lsqlab.widgets.solver_explorer import SolverExplorer, trace_index
from lsqlab.widgets.training_monitor import TrainingMonitor


def record_comm(widget) -> list[dict]:
    """The state keys and values of every message the widget sends from now on."""
    sent, send = [], widget.comm.send

    def recording(data=None, metadata=None, buffers=None):
        sent.append(dict(data.get("state", {})))
        return send(data=data, metadata=metadata, buffers=buffers)

    widget.comm.send = recording
    return sent


def test_live_figure_sends_its_state_around_each_update():
    """A view made after an update (Run All, Notebook 7, a reload) draws the synced state: it must be
    the figure as it is now, arrive before the update message that earlier views apply, and again
    after it (the page-side model applies the update itself, nulling properties the update leaves unset)."""
    monitor = TrainingMonitor(4, redraw_every=2)
    assert isinstance(monitor.figure, LiveFigure)
    sent = record_comm(monitor.figure)
    for step in range(4):
        monitor.log(step, loss=1.0 / (step + 1), violation=0.1, iterations=3)
    keys = [key for message in sent for key in message if key in ("_widget_data", "_py2js_update")]
    assert keys == ["_widget_data", "_py2js_update", "_widget_data", "_py2js_update"] * 2  # update, then its reset
    assert [message["_py2js_update"] is None for message in sent if "_py2js_update" in message] == [False, True] * 2
    synced = monitor.figure._widget_data
    np.testing.assert_allclose(synced[0]["y"], [1.0, 0.5, 1 / 3, 0.25])
    assert list(synced[2]["x"]) == [0, 1, 2, 3] and [trace["name"] for trace in synced] == list(monitor.metrics)


def test_layout_changes_reach_the_synced_state():
    figure = LiveFigure()
    figure.add_scatter(x=[0, 1], y=[1, 2])
    figure.layout.title.text = "after"
    assert figure._widget_layout["title"]["text"] == "after"
    assert list(figure._widget_data[0]["y"]) == [1, 2]


def test_status_line_reads_computing_while_the_solver_explorer_recomputes():
    explorer = SolverExplorer(rows=40, cols=10, iterations=20)
    assert explorer.status in explorer.children and explorer.status.value == ""
    events = []
    explorer.status.observe(lambda change: events.append(("status", change["new"])), names="value")
    explorer.figure.observe(lambda change: events.append(("figure", change["new"] is not None)),
                            names="_py2js_update")
    explorer.iterations.value = 25
    assert events[0] == ("status", BUSY_HTML) and events[-1] == ("status", "")
    assert ("figure", True) in events[1:-1]  # the figure changed while the status said so
    assert len(explorer.figure.data[trace_index("LSMR", "normr")].x) == 25
