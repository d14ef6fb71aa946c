"""Real-browser checks: JupyterLab and Notebook 7 from this environment, driven through Debian's
chromium by playwright.

Fixtures (import them into a test module): ``chromium``, one headless browser per session;
``lab_server``, one Jupyter server per session (JupyterLab and Notebook 7) serving a copy of
``notebooks/``. Helpers open a notebook in
either frontend, run it, compare every widget figure drawn on the page with the kernel's figure,
move sliders (keys or a mouse drag) and save screenshots under ``artifacts/browser/``.
When chromium cannot start, the check fails on CI (``CI`` set) and is skipped elsewhere.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lsqlab.lab.smoke import TRUTHY

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path(os.environ.get("LSQLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SERVER_START_S = 90
KERNEL_READY_S = 120
RUN_ALL_S = 300
WIDGET_UPDATE_S = 60

# No "get notified about Jupyter news?" toast over the screenshots, and no request for it.
NO_NEWS_SETTINGS = '{"fetchNews": "false", "checkForUpdates": false}'

KERNEL_READY_JS = """() => {
  const context = window.jupyterapp?.shell?.currentWidget?.sessionContext;
  const kernel = context?.session?.kernel;
  return Boolean(context?.isReady && kernel && kernel.status === "idle"
                 && kernel.connectionStatus === "connected");
}"""

RUN_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  const state = {pending: 0, errors: [], kernel: panel.sessionContext.session?.kernel?.status};
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== "code") continue;
    if (cell.executionCount === null) state.pending += 1;
    for (let j = 0; j < cell.outputs.length; j++) {
      const output = cell.outputs.get(j).toJSON();
      if (output.output_type === "error") state.errors.push(`${output.ename}: ${output.evalue}`);
    }
  }
  return state;
}"""

FRONTENDS = ("lab", "notebook7")
VIEWPORT = {"width": 1400, "height": 900}
FIRST_RENDER_S = 30  # from the end of Run All (or a reload) until every widget figure is drawn

# The code cells whose outputs hold a widget view, and (after scrolling each into view) every plotly
# figure inside them: per trace its type, name, number of values in x, y, z, value and their finite
# sum (the kernel side computes the same), the SVG marks drawn, and where a 3-D scene is.
WIDGET_CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget, cells = panel.content.model.cells, found = [];
  for (let i = 0; i < cells.length; i++) {
    const outputs = cells.get(i).type === "code" ? cells.get(i).outputs : null;
    for (let j = 0; outputs && j < outputs.length; j++)
      if ("application/vnd.jupyter.widget-view+json" in (outputs.get(j).data || {})) { found.push(i); break; }
  }
  return found;
}"""

WIDGET_FIGURES_JS = """async (index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.content.scrollToItem(index, "center");
  const node = panel.content.widgets[index].node;
  node.setAttribute("data-lsqlab-cell", String(index));
  const flat = (v, out) => {
    if (v === undefined || v === null) return out;
    if (typeof v === "number") { out.push(v); return out; }
    if (typeof v !== "string" && v.length !== undefined) { for (const e of v) flat(e, out); }
    return out;
  };
  return Array.from(node.querySelectorAll(".js-plotly-plot")).map((plot, k) => {
    plot.setAttribute("data-lsqlab-plot", `${index}-${k}`);
    const traces = (plot.data || []).map(t => {
      const values = [t.x, t.y, t.z, t.value].reduce((out, v) => flat(v, out), []);
      const finite = values.filter(Number.isFinite);
      return [t.type || "scatter", t.name || "", values.length, finite.reduce((a, b) => a + b, 0)];
    });
    const marks = Array.from(plot.querySelectorAll(
      ".scatterlayer .trace path.js-line, .scatterlayer .point, .contourlayer path"))
      .filter(e => e.tagName !== "path" || (e.getAttribute("d") || "").length > 4).length;
    const full = plot._fullLayout, box = plot.getBoundingClientRect();
    let scene = null;
    if (full && full.scene) {
      const size = full._size, d = full.scene.domain;
      scene = {x: box.x + size.l + d.x[0] * size.w, y: box.y + size.t + (1 - d.y[1]) * size.h,
               width: (d.x[1] - d.x[0]) * size.w, height: (d.y[1] - d.y[0]) * size.h};
    }
    return {id: `${index}-${k}`, visible: plot.offsetParent !== null && box.width > 0, traces, marks, scene};
  });
}"""

# Pixels of a PNG (base64) whose colour is saturated: drawn traces, not grey axes, panes or text.
SATURATED_PIXELS_JS = """async (png) => {
  const image = await createImageBitmap(await (await fetch("data:image/png;base64," + png)).blob());
  const canvas = new OffscreenCanvas(image.width, image.height), context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, image.width, image.height).data;
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const r = pixels[i], g = pixels[i + 1], b = pixels[i + 2];
    if (Math.max(r, g, b) - Math.min(r, g, b) > 80) count += 1;
  }
  return count;
}"""

# Run in the kernel: the same signature for every live plotly figure widget it holds.
KERNEL_FIGURES_CODE = """
def _lsqlab_browser_figures():
    import json, numpy
    from ipywidgets.widgets.widget import _instances
    from plotly.basewidget import BaseFigureWidget
    figures = []
    for widget in list(_instances.values()):
        if isinstance(widget, BaseFigureWidget):
            traces = []
            for trace in widget.data:
                props, values = trace.to_plotly_json(), []
                for key in ("x", "y", "z", "value"):
                    if props.get(key) is not None:
                        values.append(numpy.asarray(props[key], dtype=float).ravel())
                values = numpy.concatenate(values) if values else numpy.zeros(0)
                traces.append([trace.type, props.get("name") or "", int(values.size),
                               float(values[numpy.isfinite(values)].sum())])
            figures.append(traces)
    return json.dumps(figures)
"""

# Run ``code`` in the kernel silently and return the repr of the expression ``name`` (or the error).
KERNEL_VALUE_JS = """async ({code, name}) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: true, store_history: false, user_expressions: {value: name}});
  const reply = await future.done;
  const result = reply.content.user_expressions.value;
  return result.status === "ok" ? result.data["text/plain"] : `error: ${result.ename}: ${result.evalue}`;
}"""

# 3-D scenes: at least this many saturated pixels (an empty scene with the loss-minimum marker
# shows about 40, a sphere or torus with its paths several thousand).
SCENE_DRAWN_PIXELS = 400


def browser_unavailable(reason: str) -> None:
    """Fail on CI, skip locally: a missing browser must never pass silently in CI."""
    if os.environ.get("CI", "").strip().lower() in TRUTHY:
        pytest.fail(f"browser check cannot run on CI: {reason}")
    pytest.skip(f"browser check skipped (no CI): {reason}")


@dataclass(frozen=True)
class LabServer:
    """A running Jupyter server (JupyterLab and Notebook 7): its base URL, token and the folder it serves."""

    base_url: str
    token: str
    root_dir: Path

    def url(self, path: str, frontend: str = "lab") -> str:
        """The URL of ``path`` (relative to ``root_dir``) with the token, in ``frontend``.

        JupyterLab opens it in a fresh workspace of its own: on a server shared by several browser
        checks, the default workspace would reopen the other checks' notebooks, and the kernel-ready
        test might see one of those. Notebook 7 opens one notebook per page.
        """
        if frontend == "notebook7":
            return f"{self.base_url}/notebooks/{path}?token={self.token}"
        if frontend != "lab":
            raise ValueError(f"unknown frontend {frontend!r}; expected one of {FRONTENDS}")
        workspace = Path(path).stem
        return f"{self.base_url}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.token}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_jupyterlab(root_dir: Path, state_dir: Path) -> tuple[subprocess.Popen, LabServer]:
    """Start JupyterLab (which serves Notebook 7 too) on 127.0.0.1 with throwaway Jupyter/IPython dirs
    under ``state_dir``."""
    port, token = free_port(), secrets.token_hex(24)
    env = dict(os.environ, JUPYTER_PREFER_ENV_PATH="1")
    for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[variable] = str(state_dir / variable.lower())
    notifications = state_dir / "jupyter_config_dir/lab/user-settings/@jupyterlab/apputils-extension"
    notifications.mkdir(parents=True)
    (notifications / "notification.jupyterlab-settings").write_text(NO_NEWS_SETTINGS)
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True", "--JupyterNotebookApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]
    log_path = state_dir / "jupyterlab.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir)
    try:
        wait_until_serving(server, process, log_path)
    except BaseException:
        stop_process(process)
        raise
    return process, server


def wait_until_serving(server: LabServer, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/api/status?token={server.token}", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer within {SERVER_START_S} s; see {log_path}")


def stop_process(process: subprocess.Popen) -> None:
    """Stop the server and its kernels (its own process group), politely first."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # kernels left behind, if any
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab serving a copy of ``notebooks/`` (autosave rewrites files), stopped at the end."""
    root_dir = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root_dir / "notebooks")
    process, server = start_jupyterlab(root_dir, tmp_path_factory.mktemp("jupyter-state"))
    try:
        yield server
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def chromium():
    """A headless Debian chromium under playwright for the whole session."""
    from playwright.sync_api import Error, sync_playwright

    if not CHROMIUM.exists():
        browser_unavailable(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        except Error as error:
            browser_unavailable(f"chromium does not start: {error}")
        yield browser
        browser.close()


def open_notebook(page, server: LabServer, path: str, frontend: str = "lab") -> None:
    """Open ``path`` in ``frontend`` and wait until its kernel is idle *and connected* (else a run-all
    is dropped)."""
    page.goto(server.url(path, frontend))
    page.wait_for_function(KERNEL_READY_JS, timeout=KERNEL_READY_S * 1000, polling=250)


def run_all_cells(page) -> list[str]:
    """Run every cell; wait until all ran or one failed; return the errors (``ename: evalue``)."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function(
        f"() => {{ const s = ({RUN_STATE_JS})(); "
        "return s.errors.length > 0 || (s.pending === 0 && s.kernel === 'idle'); }",
        timeout=RUN_ALL_S * 1000, polling=500,
    )
    return page.evaluate(RUN_STATE_JS)["errors"]


def save_and_reload(page) -> None:
    """Once the kernel is idle (a control's computation finished), save the notebook (its outputs hold the
    widget views), reload the page and wait for the kernel. The reload is checked on the state the
    controls left, not on a computation still running."""
    page.wait_for_function(KERNEL_READY_JS, timeout=KERNEL_READY_S * 1000, polling=250)
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", polling=250)
    page.reload()
    page.wait_for_function(KERNEL_READY_JS, timeout=KERNEL_READY_S * 1000, polling=250)


def widget_cells(page) -> list[int]:
    """Indices of the code cells whose outputs show a widget."""
    return page.evaluate(WIDGET_CELLS_JS)


def kernel_figures(page) -> list[list[list]]:
    """The signature (per trace: type, name, number of values, their finite sum) of every live figure
    widget in the kernel."""
    return json.loads(ast.literal_eval(kernel_value(page, KERNEL_FIGURES_CODE, "_lsqlab_browser_figures()")))


def kernel_figure_modules(page) -> list[str]:
    """The front-end module (anywidget ``_esm``) of every live figure widget in the kernel."""
    code = ("from ipywidgets.widgets.widget import _instances as _i; from plotly.basewidget import BaseFigureWidget; "
            "_lsqlab_modules = [w._esm for w in list(_i.values()) if isinstance(w, BaseFigureWidget)]")
    return ast.literal_eval(kernel_value(page, code, "_lsqlab_modules"))


def kernel_value(page, code: str, name: str) -> str:
    """Run ``code`` silently in the current notebook's kernel; the repr of the expression ``name``."""
    answer = page.evaluate(KERNEL_VALUE_JS, {"code": code, "name": name})
    if answer.startswith("error: "):
        raise RuntimeError(f"the kernel could not evaluate {name}: {answer}")
    return answer


def same_traces(drawn: list[list], kernel: list[list]) -> bool:
    """Whether two figure signatures agree (sums to rounding)."""
    return len(drawn) == len(kernel) and all(
        a[:3] == b[:3] and math.isclose(a[3], b[3], rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(drawn, kernel)
    )


def scene_pixels(page, scene: dict) -> int:
    """Saturated pixels in a screenshot of a 3-D scene's area: how much of its WebGL drawing is data."""
    clip = {key: float(value) for key, value in scene.items()}
    png = page.screenshot(clip=clip)
    return page.evaluate(SATURATED_PIXELS_JS, base64.b64encode(png).decode())


def figure_problems(page, cell: int, kernel: list[list[list]]) -> tuple[list[str], list[dict]]:
    """What is wrong with the widget figures of ``cell`` as drawn now (empty: all fine), and the figures.

    Every visible figure must show what its kernel figure holds (its signature is one of ``kernel``'s),
    the SVG figures must have drawn marks and the 3-D ones enough coloured pixels, and at least one
    figure of the widget must hold data."""
    figures = page.evaluate(WIDGET_FIGURES_JS, cell)
    visible = [figure for figure in figures if figure["visible"]]
    problems = [] if visible else [f"cell {cell}: no visible figure"]
    with_data = 0
    for figure in visible:
        traces, name = figure["traces"], f"cell {cell}, figure {figure['id']}"
        if not any(same_traces(traces, candidate) for candidate in kernel):
            alike = [c for c in kernel if len(c) == len(traces)]
            problems.append(f"{name}: drawn data {traces} is not the kernel's (kernel figures alike: {alike})")
        if not any(trace[2] > 0 for trace in traces):
            continue
        with_data += 1
        if figure["scene"] is not None:
            pixels = scene_pixels(page, figure["scene"])
            if pixels < SCENE_DRAWN_PIXELS:
                problems.append(f"{name}: the 3-D scene shows {pixels} coloured pixels (< {SCENE_DRAWN_PIXELS})")
        elif figure["marks"] == 0:
            problems.append(f"{name}: no SVG marks drawn")
    if visible and not with_data:
        problems.append(f"cell {cell}: no figure holds data (axes only)")
    return problems, visible


def wait_until_drawn(page, cells: list[int], timeout_s: float = FIRST_RENDER_S) -> dict[int, list[dict]]:
    """Wait until every widget figure of ``cells`` is drawn with the kernel's data; return the figures.

    Fails with the problems still seen at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        kernel = kernel_figures(page)
        found = {cell: figure_problems(page, cell, kernel) for cell in cells}
        problems = [problem for cell_problems, _ in found.values() for problem in cell_problems]
        if not problems:
            return {cell: figures for cell, (_, figures) in found.items()}
        if time.monotonic() > deadline:
            pytest.fail("widget figures not drawn " f"{timeout_s:.0f} s after the run: " + "; ".join(problems))
        page.wait_for_timeout(500)


def drawn_traces(page, cell: int) -> list[list[list]]:
    """The signatures of the visible figures of ``cell``, as drawn now."""
    return [figure["traces"] for figure in page.evaluate(WIDGET_FIGURES_JS, cell) if figure["visible"]]


def wait_for_change(page, cell: int, before: list[list[list]]) -> None:
    """Wait until a figure of ``cell`` draws something else than ``before``."""
    deadline = time.monotonic() + WIDGET_UPDATE_S
    while drawn_traces(page, cell) == before:
        if time.monotonic() > deadline:
            pytest.fail(f"cell {cell}: no figure changed within {WIDGET_UPDATE_S} s of moving the control")
        page.wait_for_timeout(250)


def slider_handle(page, cell: int):
    """The handle of the first slider in ``cell``'s widget, scrolled into view."""
    handle = page.locator(f'[data-lsqlab-cell="{cell}"] .widget-slider .noUi-handle').first
    handle.scroll_into_view_if_needed()
    return handle


def press_slider(page, cell: int, key: str = "ArrowRight", times: int = 3) -> None:
    """Press ``key`` on the handle of ``cell``'s first slider ``times`` times.

    Each press re-focuses the handle: the notebook takes focus back when it activates a cell, and a
    stray arrow key in command mode would collapse a heading instead of moving the slider.
    """
    handle = slider_handle(page, cell)
    for _ in range(times):
        handle.press(key)
        page.wait_for_timeout(150)


def drag_slider(page, cell: int, pixels: float = 40) -> None:
    """Drag the handle of ``cell``'s first slider ``pixels`` to the right with the mouse."""
    box = slider_handle(page, cell).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=8)
    page.mouse.up()


def screenshot_cell(page, cell: int, name: str) -> Path:
    """Write ``artifacts/browser/<name>.png``: the cell with its widget, and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.locator(f'[data-lsqlab-cell="{cell}"]').screenshot(path=str(path))
    return path
