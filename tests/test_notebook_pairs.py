"""Notebook hygiene: each notebooks/*.py (jupytext py:percent) and its .ipynb agree cell by cell, the
.ipynb is stripped, the kernel is python3, the README lists it, and no code downloads anything.

Each check is a function returning problems, so that it is also tested on a broken notebook.
"""

import json
import re
import shutil
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))
IPYNBS = sorted(NOTEBOOKS.glob("*.ipynb"))
COLAB_INSTALL_TAG = "active-ipynb"  # the Colab install cell: runs only in the notebook
NETWORK_CALL = re.compile(r"urllib|requests|urlopen|\bfetch_|https?://|\bwget\b|\bcurl\b|pip install|socket")


def cells(path: Path) -> list[tuple[str, str]]:
    """(cell_type, source) of every cell, as jupytext reads the file."""
    return [(cell.cell_type, cell.source) for cell in jupytext.read(path).cells]


def pairing_problems(folder: Path) -> list[str]:
    """Unpaired notebooks and pairs whose cells differ."""
    sources = {path.stem for path in folder.glob("*.py")}
    ipynbs = {path.stem for path in folder.glob("*.ipynb")}
    problems = [f"{stem}.py has no {stem}.ipynb" for stem in sorted(sources - ipynbs)]
    problems += [f"{stem}.ipynb has no {stem}.py" for stem in sorted(ipynbs - sources)]
    for stem in sorted(sources & ipynbs):
        py_cells, ipynb_cells = cells(folder / f"{stem}.py"), cells(folder / f"{stem}.ipynb")
        if py_cells != ipynb_cells:
            first = next(
                (i for i, pair in enumerate(zip(py_cells, ipynb_cells)) if pair[0] != pair[1]),
                min(len(py_cells), len(ipynb_cells)),
            )
            problems.append(
                f"{stem}.py and {stem}.ipynb differ from cell {first} on "
                f"({len(py_cells)} vs {len(ipynb_cells)} cells): run `jupytext --sync notebooks/{stem}.py`"
            )
    return problems


def stripped_problems(ipynb: Path) -> list[str]:
    """Outputs, execution counts or saved widget state left in an .ipynb."""
    notebook = json.loads(ipynb.read_text())
    problems = [
        f"{ipynb.name} cell {i} has outputs or an execution count"
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    if "widgets" in notebook["metadata"]:
        problems.append(f"{ipynb.name} stores widget state in its metadata")
    return problems


def network_problems(path: Path) -> list[str]:
    """Code cells (other than the Colab install cell) that look like they reach the network."""
    return [
        f"{path.name} cell {i}: {match.group(0)!r}"
        for i, cell in enumerate(jupytext.read(path).cells)
        if cell.cell_type == "code" and COLAB_INSTALL_TAG not in cell.metadata.get("tags", [])
        for match in [NETWORK_CALL.search(cell.source)]
        if match
    ]


def test_there_are_notebooks():
    assert SOURCES and IPYNBS


def test_every_notebook_is_paired_and_in_sync():
    assert pairing_problems(NOTEBOOKS) == []


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda path: path.name)
def test_ipynb_is_stripped(ipynb):
    assert stripped_problems(ipynb) == []


@pytest.mark.parametrize("path", SOURCES + IPYNBS, ids=lambda path: path.name)
def test_kernel_is_python3(path):
    assert jupytext.read(path).metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda path: path.name)
def test_readme_lists_notebook(ipynb):
    assert f"notebooks/{ipynb.name}" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.name)
def test_no_network_calls(path):
    assert network_problems(path) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.name)
def test_colab_install_cell_comes_first_and_is_guarded(path):
    first = jupytext.read(path).cells[0]
    assert COLAB_INSTALL_TAG in first.metadata.get("tags", [])
    assert '"google.colab" in sys.modules' in first.source


# The checks above must be able to fail.


@pytest.fixture
def tour_copy(tmp_path: Path) -> Path:
    """A fresh, correct pair made from notebooks/00_tour.py, whatever the state of its .ipynb."""
    shutil.copy(NOTEBOOKS / "00_tour.py", tmp_path)
    jupytext.write(jupytext.read(tmp_path / "00_tour.py"), tmp_path / "00_tour.ipynb")
    assert pairing_problems(tmp_path) == [] and stripped_problems(tmp_path / "00_tour.ipynb") == []
    return tmp_path


@pytest.mark.parametrize("stale_side", [".py", ".ipynb"])
def test_pairing_check_catches_a_stale_side(tour_copy, stale_side):
    edited = tour_copy / f"00_tour{'.ipynb' if stale_side == '.py' else '.py'}"
    notebook = jupytext.read(edited)
    notebook.cells[-1].source += "\nprint('edited on one side only')"
    jupytext.write(notebook, edited)
    assert len(pairing_problems(tour_copy)) == 1


def test_pairing_check_catches_an_orphan(tour_copy):
    (tour_copy / "00_tour.py").rename(tour_copy / "01_orphan.py")
    assert len(pairing_problems(tour_copy)) == 2


def test_stripped_check_catches_outputs(tour_copy):
    path = tour_copy / "00_tour.ipynb"
    notebook = json.loads(path.read_text())
    code_cell = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    code_cell["execution_count"] = 1
    code_cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    path.write_text(json.dumps(notebook))
    assert len(stripped_problems(path)) == 1


def test_network_check_catches_a_download(tour_copy):
    path = tour_copy / "00_tour.py"
    path.write_text(path.read_text() + '\n# %%\nfrom sklearn.datasets import fetch_openml\n')
    assert len(network_problems(path)) == 1
