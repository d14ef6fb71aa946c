"""The Jupyter server side of lsqlab's widgets: plotly's widget code served once per page.

A plotly ``FigureWidget`` carries its whole front-end (plotly.js with the widget, about 5 MB) in its
synced state, as anywidget's ``_esm``, so every live figure sends it again: when it is displayed, and
for every figure of the kernel whenever a page (re)connects, and each figure compiles its own copy.
Notebook 03 holds three live figures: 15 MB to restore a page, which under load ended in "Error
displaying widget: model not found" (JupyterLab's widget manager waits 2 s for a model, anywidget 2 s
for a figure's module). This server
extension serves the bundle at ``{base_url}lsqlab/plotly-widget.js`` and marks the kernels its server
starts (``ENV_VAR``); a kernel so marked gives its figures :func:`figure_module`, four lines that import
the bundle from there, so a page fetches and compiles it once and widget state is a few kilobytes.
Kernels of any other server (no extension, VS Code, Colab) keep plotly's own inline bundle.

Neither this package nor its handler imports JAX or plotly: the server loads it at start-up.
"""

from __future__ import annotations

import json
import os

ROUTE = "lsqlab/plotly-widget.js"  # below the server's base_url
ENV_VAR = "LSQLAB_PLOTLY_WIDGET_ROUTE"  # set for the kernels the server starts: ROUTE with plotly's version

# Resolve the route against the page's base URL (JupyterLab and Notebook 7 write it into
# jupyter-config-data) and hand anywidget plotly's own widget factory from the module found there.
FIGURE_MODULE = """\
const config = JSON.parse(document.getElementById("jupyter-config-data")?.textContent || "{}");
const base = new URL(config.baseUrl || "/", window.location.href);
const url = new URL(__ROUTE__, base).href;
export default async () => (await import(url)).default();
"""


def figure_module(route: str) -> str:
    """The ``_esm`` of a live figure that imports plotly's bundle from ``{base_url}{route}``."""
    return FIGURE_MODULE.replace("__ROUTE__", json.dumps(route))


def served_route() -> str | None:
    """The bundle's route in a kernel started by a server with this extension, else None."""
    return os.environ.get(ENV_VAR)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "lsqlab_jupyter"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Serve plotly's widget bundle and mark the kernels this server starts; without plotly, neither."""
    from lsqlab_jupyter.bundle import add_bundle_route

    route = add_bundle_route(serverapp.web_app, serverapp.log)
    if route is not None:
        os.environ[ENV_VAR] = route  # kernels inherit the server's environment
