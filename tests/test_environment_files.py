"""The files that install the lab elsewhere agree with requirements.txt, the lock CI installs.

Conda cannot run here, so environment.yml (local conda users) and binder/environment.yml (Binder)
are compared with the lock instead; `python3 dev.py lock` regenerates all three.
"""

import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT_FILES = [ROOT / "environment.yml", ROOT / "binder" / "environment.yml"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    """{normalized name: version} of the ``name==version`` lines; raises on unpinned ones."""
    result = {}
    for line in lines:
        match = PIN.match(line.strip())
        assert match, f"not an exact pin: {line!r}"
        result[normalized(match.group(1))] = match.group(2)
    return result


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.txt").read_text()
    return pins([line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")])


def conda_environment(path: Path) -> tuple[list[str], dict[str, str]]:
    """The conda packages and the pinned pip packages of an environment file."""
    dependencies = yaml.safe_load(path.read_text())["dependencies"]
    conda = [entry for entry in dependencies if isinstance(entry, str)]
    (pip_section,) = [entry["pip"] for entry in dependencies if isinstance(entry, dict)]
    return conda, pins(pip_section)


def test_lock_is_for_python_311_and_pins_the_lab():
    text = (ROOT / "requirements.txt").read_text()
    assert "--python-version 3.11" in text
    assert {"jax", "jupyterlab", "plotly", "anywidget", "ipywidgets", "pytest", "nbmake"} <= set(locked())


@pytest.mark.parametrize("path", ENVIRONMENT_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_environment_file_matches_the_lock(path):
    conda, pip_pins = conda_environment(path)
    assert "python=3.11" in conda and "pip" in conda
    assert pip_pins == locked()  # every pip entry an exact pin: no fragile `-r requirements.txt`


def test_binder_post_build_installs_the_package():
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK)
    lines = [line.strip() for line in post_build.read_text().splitlines() if line.strip()]
    assert lines[0] == "#!/bin/bash"
    commands = [line for line in lines[1:] if not line.startswith("#")]
    assert commands[0] == "set -e"
    assert "pip install ." in commands


def test_ci_entry_point_runs_dev_test_and_nothing_else():
    run = ROOT / ".ci" / "run"
    assert os.access(run, os.X_OK)
    lines = [line.strip() for line in run.read_text().splitlines() if line.strip()]
    assert lines[0] == "#!/usr/bin/env bash"
    commands = [line for line in lines[1:] if not line.startswith("#")]
    assert commands[0] == "set -euo pipefail"
    assert commands[1].startswith("cd ")
    assert commands[2:] == ["exec python3 dev.py test"]
