"""The training monitor without a kernel: it draws what the loop logs, every few steps and at the end."""

import numpy as np
import pytest

from lsqlab.widgets.training_monitor import TrainingMonitor


def test_logs_redraw_every_few_steps_and_at_the_end():
    monitor = TrainingMonitor(10, redraw_every=4)
    for step in range(10):
        monitor.log(step, loss=1.0 / (step + 1), violation=10.0**-step, iterations=3)
        drawn = len(monitor.figure.data[0].x)
        assert drawn == 4 * ((step + 1) // 4) or (step == 9 and drawn == 10)
    np.testing.assert_allclose(monitor.figure.data[0].y, 1 / np.arange(1, 11))
    np.testing.assert_allclose(monitor.figure.data[1].y, 10.0 ** -np.arange(10))
    assert list(monitor.figure.data[2].y) == [3] * 10
    assert monitor.progress.value == 10 and "iterations = 3" in monitor.readout.value


def test_non_finite_value_shows_a_message_and_is_not_drawn():
    monitor = TrainingMonitor(5, redraw_every=1)
    monitor.log(0, loss=1.0, violation=0.1, iterations=2)
    monitor.log(1, loss=float("nan"), violation=0.1, iterations=2)
    assert "loss is not finite" in monitor.message.value
    assert list(monitor.figure.data[0].y) == [1.0]


def test_bad_use_is_refused():
    with pytest.raises(ValueError, match="total_steps"):
        TrainingMonitor(0)
    with pytest.raises(ValueError, match="missing metrics"):
        TrainingMonitor(3).log(0, loss=1.0)


def test_static_fallback_redraws_into_an_output():
    monitor = TrainingMonitor(2, redraw_every=1, live=False)
    monitor.log(0, loss=1.0, violation=0.1, iterations=2)
    (first,) = monitor.static_view.outputs
    monitor.log(1, loss=0.5, violation=0.01, iterations=2)
    (second,) = monitor.static_view.outputs
    assert second is not first and "text/html" in second["data"]
