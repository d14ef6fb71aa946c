"""lsqlab_jupyter without a browser: the route it adds, the module it gives kernels, and LiveFigure's use of
it. tests/test_browser.py checks the rest on a running server: the bundle served to logged-in pages only,
and every live figure of every notebook drawn from it."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tornado import web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

import lsqlab_jupyter
from lsqlab_jupyter import bundle


def test_the_module_imports_the_bundle_from_the_route_below_the_page_base_url():
    module = lsqlab_jupyter.figure_module("lsqlab/plotly-widget.js?v=6.1")
    assert 'new URL("lsqlab/plotly-widget.js?v=6.1", base)' in module
    assert "jupyter-config-data" in module and "baseUrl" in module
    assert "export default async () => (await import(url)).default();" in module
    assert len(module) < 400  # instead of plotly's 5 MB bundle in every figure's state


@pytest.mark.parametrize("base_url", ["/", "/user/student/"])
def test_the_route_is_added_below_the_server_base_url(base_url):
    app = web.Application(base_url=base_url)
    route = bundle.add_bundle_route(app, logging.getLogger("test"))
    assert route == f"{lsqlab_jupyter.ROUTE}?v={importlib.metadata.version('plotly')}"
    assert app.settings["lsqlab_plotly_bundle"] == bundle.plotly_bundle()
    assert bundle.plotly_bundle().stat().st_size > 1_000_000  # plotly.js and the widget
    assert handler_of(app, f"{base_url}{lsqlab_jupyter.ROUTE}") is bundle.PlotlyWidgetBundle
    assert handler_of(app, f"{base_url}lsqlab/plotly-widgetXjs") is not bundle.PlotlyWidgetBundle


def handler_of(app: web.Application, path: str) -> type:
    request = HTTPServerRequest(start_line=RequestStartLine("GET", path, "HTTP/1.1"), headers=HTTPHeaders(Host="localhost"))
    return app.find_handler(request).handler_class


def test_without_plotly_no_route_and_kernels_are_not_marked(monkeypatch, caplog):
    monkeypatch.setattr(bundle.importlib.util, "find_spec", lambda name: None)
    app = web.Application(base_url="/")
    assert bundle.add_bundle_route(app, logging.getLogger("test")) is None
    assert "lsqlab_plotly_bundle" not in app.settings
    assert "inline" in caplog.text


@pytest.mark.parametrize("route", [None, "lsqlab/plotly-widget.js?v=1"])
def test_live_figures_use_the_served_module_only_in_kernels_of_such_a_server(route):
    """In a fresh interpreter, as a kernel imports the widgets: with the server's mark, the module; without
    it, plotly's own bundle."""
    env = {key: value for key, value in os.environ.items() if key != lsqlab_jupyter.ENV_VAR}
    if route is not None:
        env[lsqlab_jupyter.ENV_VAR] = route
    code = ("import plotly.graph_objects as go; from lsqlab.widgets.figures import LiveFigure; "
            "print(LiveFigure(go.Figure())._esm, end='')")
    esm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    if route is None:
        assert esm == bundle.plotly_bundle().read_text()
    else:
        assert esm == lsqlab_jupyter.figure_module(route)


def test_the_wheel_config_enables_the_extension():
    config = Path(lsqlab_jupyter.__file__).with_name("lsqlab_jupyter.json")
    assert json.loads(config.read_text()) == {"ServerApp": {"jpserver_extensions": {"lsqlab_jupyter": True}}}
    assert lsqlab_jupyter._jupyter_server_extension_points() == [{"module": "lsqlab_jupyter"}]
