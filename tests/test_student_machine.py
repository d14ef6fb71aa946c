"""The student's machine: every notebook runs from the built wheel, outside the checkout, as is and as Colab would.

The wheel is built once from this checkout (sdist, then the wheel from the sdist, as from a fresh clone)
and installed, not editable, into a fresh virtual environment in a temporary folder, with uv (its cache
makes this seconds). The notebooks are copied to a folder of their own there and each runs in smoke mode
with nbmake from that folder, on that environment's kernel, with throwaway Jupyter and IPython
directories: nothing of the checkout is on the path, so a notebook that needs a file from the checkout
fails here. Then the same environment plays Colab:

- a ``google.colab`` module is imported at kernel start (an IPython startup file), so the notebooks'
  Colab branches run;
- lsqlab is uninstalled, and each notebook's install cell is pointed at the built wheel (instead of
  GitHub), so the install cell itself has to put lsqlab there;
- Colab's widget stack replaces the lab's: :data:`COLAB_STACK`, the versions in Colab's published
  package list (github.com/googlecolab/backend-info, ``pip-freeze.gpu.txt``, commit 4647a1d,
  February 2026: ipywidgets 7.7.1, plotly 5.24.1; also anywidget 0.9.21, jax 0.7.2, numpy 2.0.2,
  Python 3.12, which are not copied here).

In that mode every widget must fall back to its static figure, and each such figure must hold data:
the executed notebook's saved widget state is read back, and it must contain no live plotly figure and,
where a notebook makes one of lsqlab's widgets, Output widgets holding plotly figures whose traces carry data.
The run as is must use live figures instead, each saved with its data (the state a view opened later
starts from; what a browser draws of them is tests/test_browser.py's part). Marker ``student`` (deselect with ``-m "not student"``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.student

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RECORDED = ROOT / "lsqlab" / "applications" / "results"
COLAB_STACK = ("ipywidgets==7.7.1", "plotly==5.24.1")
INSTALL_TARGET = 'f"git+https://github.com/{LSQLAB_REPO}"'  # what the notebooks' Colab cell installs
CELL_TIMEOUT = 600
PLOTLY = "application/vnd.plotly.v1+json"
COLAB_STANDIN = ROOT / "tests" / "colab_standin"  # google/colab/{__init__,output}.py (google/: a namespace)
UNSET = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "JUPYTER_PATH", "PYTEST_ADDOPTS")


@dataclass
class Machine:
    """The wheel, a fresh environment outside the checkout, and the mode it is in now."""

    base: Path
    uv: Path
    wheel: Path
    python: Path
    mode: str = ""
    copies: dict[str, Path] = field(default_factory=dict)

    def uv_run(self, *args: str | Path) -> None:
        result = subprocess.run([str(self.uv), *map(str, args)], capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"uv {' '.join(map(str, args))}:\n{result.stderr[-3000:]}"

    def use(self, mode: str) -> Path:
        """Switch the environment to ``mode`` ("student" or "colab"); the folder of its notebook copies."""
        if mode != self.mode:
            if mode == "student":  # the wheel with its lab extra, at the versions CI is locked to
                self.uv_run("pip", "install", "--python", self.python, "-c", ROOT / "requirements.txt",
                            f"lsqlab[lab] @ {self.wheel.as_uri()}", "pytest", "nbmake")
            else:  # Colab: its widget stack (lsqlab comes from each notebook's install cell)
                self.uv_run("pip", "install", "--python", self.python, *COLAB_STACK)
            self.mode = mode
        return self.copies[mode]

    def env(self, mode: str) -> dict[str, str]:
        """No trace of the checkout; throwaway Jupyter/IPython folders; Colab's module for mode "colab"."""
        env = {key: value for key, value in os.environ.items() if key not in UNSET}
        home = self.base / f"{mode}-home"
        env.update(
            PATH=os.pathsep.join([str(self.python.parent), env.get("PATH", "")]), LSQLAB_SMOKE="1",
            JUPYTER_CONFIG_DIR=str(home / "jupyter-config"), JUPYTER_DATA_DIR=str(home / "jupyter-data"),
            IPYTHONDIR=str(home / "ipython"), JUPYTER_PREFER_ENV_PATH="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        if mode == "colab":
            startup = home / "ipython" / "profile_default" / "startup"
            startup.mkdir(parents=True, exist_ok=True)
            (startup / "00-colab.py").write_text("import google.colab.output  # loaded at kernel start, as on Colab\n")
            shutil.copytree(COLAB_STANDIN, self.base / "colab-site", dirs_exist_ok=True)
            env["PYTHONPATH"] = str(self.base / "colab-site")
        return env


def copy_notebooks(folder: Path, wheel: Path | None) -> Path:
    """The notebooks alone in ``folder``; with ``wheel``, each Colab install cell installs it instead."""
    folder.mkdir(parents=True)
    for notebook in NOTEBOOKS:
        text = notebook.read_text()
        if wheel is not None:
            assert text.count(json.dumps(INSTALL_TARGET)[1:-1]) == 1, (
                f"{notebook.name}: its Colab install cell no longer installs {INSTALL_TARGET}; update this test")
            text = text.replace(json.dumps(INSTALL_TARGET)[1:-1], json.dumps(repr(str(wheel)))[1:-1])
        (folder / notebook.name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Machine:
    """Build the wheel once, check it carries the recorded tables, make the fresh environment, and copy
    the notebooks for both modes (now, so that they match the wheel)."""
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        found = shutil.which("uv")
        assert found, "the student-machine test needs uv (python3 dev.py test installs it into .venv)"
        uv = Path(found)
    base = tmp_path_factory.mktemp("student-machine")
    result = subprocess.run([str(uv), "build", "--out-dir", str(base / "dist"), str(ROOT)], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (base / "dist").glob("lsqlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p.name for p in sorted(RECORDED.glob("*")) if f"lsqlab/applications/results/{p.name}" not in names]
    assert not missing, f"the wheel lacks recorded results files {missing}: declare them as package data"
    assert any(name.endswith("data/etc/jupyter/jupyter_server_config.d/lsqlab_jupyter.json") for name in names), (
        "the wheel does not enable lsqlab_jupyter in the Jupyter server it is installed with")
    result = subprocess.run([str(uv), "venv", "--seed", "--python", sys.executable, str(base / "venv")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    copies = {mode: copy_notebooks(base / mode, wheel if mode == "colab" else None) for mode in ("student", "colab")}
    return Machine(base=base, uv=uv, wheel=wheel, python=base / "venv" / "bin" / "python", copies=copies)


def execute(machine: Machine, mode: str, notebook: str) -> dict:
    """Run one notebook copy with nbmake in ``mode``; return the executed notebook (outputs, widget state)."""
    folder = machine.use(mode)
    if mode == "colab":  # each notebook's install cell has to install lsqlab itself
        machine.uv_run("pip", "uninstall", "--python", machine.python, "lsqlab")
    result = subprocess.run(
        [str(machine.python), "-m", "pytest", "--nbmake", "--overwrite", f"--nbmake-timeout={CELL_TIMEOUT}",
         "-p", "no:cacheprovider", "-q", notebook],
        cwd=folder, env=machine.env(mode), capture_output=True, text=True, timeout=3 * CELL_TIMEOUT)
    assert result.returncode == 0, f"{notebook} failed ({mode}):\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
    return json.loads((folder / notebook).read_text())


def widget_models(executed: dict) -> list[dict]:
    """The widget models (module, name, state) the kernel left at the end of the run."""
    state = executed["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return list(state.get("state", {}).values())


def static_figures(models: list[dict]) -> list[dict]:
    """The plotly figures drawn into Output widgets (the static fallback)."""
    return [output["data"][PLOTLY] for model in models if model["model_name"] == "OutputModel"
            for output in model["state"].get("outputs", []) if PLOTLY in output.get("data", {})]


POINTS = ("x", "y", "z", "values")


def points(value: object) -> bool:
    """A non-empty list, or plotly's non-empty base64 typed array {"dtype", "bdata"}."""
    return bool(value.get("bdata")) if isinstance(value, dict) else isinstance(value, list) and bool(value)


def has_data(figure: dict) -> bool:
    """Some trace of ``figure`` carries points (x, y, z, values...): more than axes."""
    return any(points(trace.get(key)) for trace in figure.get("data", []) for key in POINTS)


def live_has_data(model: dict) -> bool:
    """A live FigureWidget's saved state (what a view opened later, e.g. after a reload, starts from)
    holds points: inline in ``_widget_data`` or as a binary buffer at ``_widget_data/i/x``."""
    buffered = {tuple(buffer["path"][:3]) for buffer in model.get("buffers", []) if buffer.get("data")}
    traces = model["state"].get("_widget_data", [])
    return any(points(trace.get(key)) or ("_widget_data", index, key) in buffered
               for index, trace in enumerate(traces) for key in POINTS)


def uses_widgets(notebook: str) -> bool:
    """Whether the notebook makes one of the widgets ``lsqlab.widgets`` exports."""
    init = (ROOT / "lsqlab" / "widgets" / "__init__.py").read_text()
    exported = re.findall(r"^from lsqlab\.widgets\.\w+ import (\w+)", init, flags=re.MULTILINE)
    source = (ROOT / "notebooks" / notebook).with_suffix(".py").read_text()
    return any(re.search(rf"\b{name}\(", source) for name in exported)


def live_figure(model: dict) -> bool:
    return model["model_module"] in ("anywidget", "jupyterlab-plotly")


@pytest.mark.parametrize("notebook", [path.name for path in NOTEBOOKS])
def test_notebook_runs_from_the_wheel_outside_the_checkout(machine, notebook):
    models = widget_models(execute(machine, "student", notebook))
    if uses_widgets(notebook):
        live = [model for model in models if live_figure(model)]
        assert live, f"{notebook}: no live FigureWidget outside Colab"
        assert all(live_has_data(model) for model in live), f"{notebook}: a live figure saved without its data"


@pytest.mark.parametrize("notebook", [path.name for path in NOTEBOOKS])
def test_notebook_runs_as_colab_would_with_static_figures_that_show_data(machine, notebook):
    models = widget_models(execute(machine, "colab", notebook))
    installed = subprocess.run([str(machine.uv), "pip", "show", "--python", str(machine.python), "lsqlab"],
                               capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, "the notebook's Colab install cell did not install the wheel"
    assert not [m["model_name"] for m in models if live_figure(m)], f"{notebook}: a live figure on Colab"
    figures = static_figures(models)
    assert all(has_data(figure) for figure in figures), f"{notebook}: a static figure without data"
    if uses_widgets(notebook):
        assert figures, f"{notebook}: its widgets drew no static figure"
