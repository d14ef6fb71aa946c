"""Real-browser checks: JupyterLab from this environment, driven through Debian's chromium by playwright.

Fixtures (import them into a test module): ``chromium``, one headless browser per session;
``lab_server``, one JupyterLab per session serving a copy of ``notebooks/``; ``lab_page``, a fresh
page for each test. Helpers then open a notebook, run it,
read plotly figures from the DOM, move sliders and save screenshots under ``artifacts/browser/``.
When chromium cannot start, the check fails on CI (``CI`` set) and is skipped elsewhere.
"""

from __future__ import annotations

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

from lsqlab.smoke import TRUTHY

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

PLOTLY_TRACE_JS = """([index, trace, axis]) => {
  const plot = document.querySelectorAll(".js-plotly-plot")[index];
  return plot && plot.data && plot.data[trace] ? Array.from(plot.data[trace][axis]) : null;
}"""


def browser_unavailable(reason: str) -> None:
    """Fail on CI, skip locally: a missing browser must never pass silently in CI."""
    if os.environ.get("CI", "").strip().lower() in TRUTHY:
        pytest.fail(f"browser check cannot run on CI: {reason}")
    pytest.skip(f"browser check skipped (no CI): {reason}")


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: its base URL, token and the folder it serves."""

    base_url: str
    token: str
    root_dir: Path

    def url(self, path: str) -> str:
        """The URL of ``path`` (relative to ``root_dir``) in a fresh JupyterLab workspace of its own,
        with the token: on a server shared by several browser checks, the default workspace would
        reopen the other checks' notebooks, and the kernel-ready test might see one of those."""
        workspace = Path(path).stem
        return f"{self.base_url}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.token}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_jupyterlab(root_dir: Path, state_dir: Path) -> tuple[subprocess.Popen, LabServer]:
    """Start JupyterLab on 127.0.0.1 with throwaway Jupyter/IPython dirs under ``state_dir``."""
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
        "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
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


@pytest.fixture
def lab_page(chromium):
    """A fresh page in its own browser context."""
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def open_notebook(page, server: LabServer, path: str) -> None:
    """Open ``path`` and wait until its kernel is idle *and connected* (else a run-all is dropped)."""
    page.goto(server.url(path))
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


def plotly_trace(page, trace: int, *, plot: int = 0, axis: str = "y") -> list[float] | None:
    """One coordinate array of a trace of the ``plot``-th plotly figure on the page, as drawn."""
    return page.evaluate(PLOTLY_TRACE_JS, [plot, trace, axis])


def wait_for_trace_change(page, before: list[float], trace: int, *, plot: int = 0, axis: str = "y") -> list[float]:
    """Wait until the drawn trace differs from ``before``; return it."""
    page.wait_for_function(
        f"([args, before]) => {{ const now = ({PLOTLY_TRACE_JS})(args); "
        "return now !== null && JSON.stringify(now) !== JSON.stringify(before); }",
        arg=[[plot, trace, axis], before], timeout=WIDGET_UPDATE_S * 1000, polling=250,
    )
    return plotly_trace(page, trace, plot=plot, axis=axis)


def press_slider(page, key: str = "ArrowRight", times: int = 3, *, slider: int = 0) -> None:
    """Press ``key`` on the handle of the ``slider``-th ipywidgets slider a few times.

    Each press re-focuses the handle: the notebook takes focus back when it activates a cell, and a
    stray arrow key in command mode would collapse a heading instead of moving the slider.
    """
    handle = page.locator(".widget-slider .noUi-handle").nth(slider)
    handle.scroll_into_view_if_needed()
    for _ in range(times):
        handle.press(key)
        page.wait_for_timeout(150)


def save_screenshot(page, name: str) -> Path:
    """Write ``artifacts/browser/<name>.png`` and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path

