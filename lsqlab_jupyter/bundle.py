"""The route that serves plotly's widget bundle (``plotly/package_data/widgetbundle.js``) to the browser."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from lsqlab_jupyter import ROUTE


class PlotlyWidgetBundle(JupyterHandler):
    """GET: the bundle as a JavaScript module; the browser keeps it (its URL carries plotly's version)."""

    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "private, max-age=31536000, immutable")
        self.finish(self.settings["lsqlab_plotly_bundle"].read_bytes())


def plotly_bundle() -> Path | None:
    """plotly's widget bundle, found without importing plotly; None where plotly or its bundle is missing."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    bundle = Path(spec.origin).parent / "package_data" / "widgetbundle.js"
    return bundle if bundle.is_file() else None


def versioned_route() -> str:
    """``ROUTE?v=<plotly's version>``: a new plotly gets a new URL, not the browser's cached bundle."""
    return f"{ROUTE}?v={importlib.metadata.version('plotly')}"


def add_bundle_route(web_app: web.Application, log: logging.Logger) -> str | None:
    """Serve the bundle at ``{base_url}ROUTE``; return :func:`versioned_route`, or None without a bundle."""
    bundle = plotly_bundle()
    if bundle is None:
        log.warning("lsqlab_jupyter: no plotly widget bundle here; live figures keep plotly's inline copy")
        return None
    web_app.settings["lsqlab_plotly_bundle"] = bundle
    pattern = web_app.settings["base_url"].rstrip("/") + "/" + ROUTE.replace(".", r"\.")
    web_app.add_handlers(".*$", [(pattern, PlotlyWidgetBundle)])
    return versioned_route()
