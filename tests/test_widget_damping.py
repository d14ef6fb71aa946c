"""The tour's damping widget without a kernel: moving the slider refits and redraws in place."""

import base64

import numpy as np
import pytest

from lsqlab.lab.regression import fit_damped, make_problem
from lsqlab.widgets import DampingExplorer
from lsqlab.widgets.damping import FIT_TRACE


@pytest.fixture(scope="module")
def problem():
    return make_problem(seed=0)


def test_slider_refits_the_live_figure(problem):
    explorer = DampingExplorer(problem, damp=1e-3)
    assert explorer.is_live
    before = np.array(explorer.figure.data[FIT_TRACE].y)
    np.testing.assert_allclose(before, fit_damped(problem, 1e-3).curve)

    explorer.slider.value = 1.0
    after = np.array(explorer.figure.data[FIT_TRACE].y)
    expected = fit_damped(problem, 1.0)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, expected.curve)
    assert f"{expected.held_out_error:.3f}" in explorer.readout.value


def drawn_fit(output: dict) -> np.ndarray:
    """The fitted curve in a static plotly output (plotly >= 6 writes arrays as base64 typed arrays)."""
    y = output["data"]["application/vnd.plotly.v1+json"]["data"][FIT_TRACE]["y"]
    if isinstance(y, dict):
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])
    return np.asarray(y)


def test_static_fallback_redraws_into_an_output(problem):
    explorer = DampingExplorer(problem, damp=1e-3, live=False)
    assert not explorer.is_live and explorer.static_view in explorer.children
    (output_before,) = explorer.static_view.outputs

    explorer.slider.value = 1.0
    (output,) = explorer.static_view.outputs
    assert not np.allclose(drawn_fit(output), drawn_fit(output_before))
    np.testing.assert_allclose(drawn_fit(output), fit_damped(problem, 1.0).curve)
    assert "text/html" in output["data"]  # what Colab renders
