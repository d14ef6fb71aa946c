#!/usr/bin/env python3
"""Developer entry point for lsqlab (standard library only, run with a bare ``python3``).

    python3 dev.py lab           JupyterLab on 127.0.0.1 (token auth) opening notebooks/00_tour.ipynb
    python3 dev.py test [ARGS]   one pytest run of tests/: unit tests, every notebook from the built wheel
                                 outside the checkout, as is and as Colab would (marker `student`), and the
                                 browser check (marker `browser`); ARGS go to pytest
    python3 dev.py lock          re-pin requirements.txt from pyproject.toml's extras `lab` and `dev`,
                                 and rewrite environment.yml and binder/environment.yml from it

Every command works in ./.venv, created on first use; it is re-installed from requirements.txt
whenever requirements.txt or pyproject.toml change. Nothing is registered outside the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
INSTALL_STAMP = VENV / "lsqlab-install.sha256"
JAX_CACHE = ROOT / ".cache" / "jax"
JUPYTER_RUNTIME = ROOT / ".cache" / "jupyter-runtime"
REQUIREMENTS = ROOT / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
TOUR = "notebooks/00_tour.ipynb"
LOCK_PYTHON = "3.11"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM = Path(os.environ.get("LSQLAB_CHROMIUM", DEBIAN_CHROMIUM))
ENVIRONMENT_FILES = (ROOT / "environment.yml", ROOT / "binder" / "environment.yml")
# What the wheel installs to enable lsqlab's Jupyter server extension (an editable install does not).
SERVER_EXTENSION_CONFIG = VENV / "etc" / "jupyter" / "jupyter_server_config.d" / "lsqlab_jupyter.json"
# JupyterLab's settings defaults inside .venv: no "get notified about Jupyter news?" pop-up over the figures.
LAB_OVERRIDES = VENV / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
NO_NEWS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def venv_bin(name: str) -> Path:
    """An executable inside .venv."""
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def exec_tool(command: list[str | Path], env: dict[str, str]) -> None:
    """Replace dev.py by the tool, so that Ctrl-C, signals and the exit code are the tool's own."""
    print("+", " ".join(str(part) for part in command), flush=True)
    os.chdir(ROOT)
    os.execve(command[0], [str(part) for part in command], env)


def run(command: list[str | Path], **kwargs) -> None:
    """Echo and run a command; stop dev.py with its exit code if it fails."""
    print("+", " ".join(str(part) for part in command), flush=True)
    code = subprocess.call([str(part) for part in command], **kwargs)
    if code != 0:
        sys.exit(code)


def ensure_uv() -> Path:
    """Create .venv with uv in it if missing; return the venv's python."""
    python = venv_bin("python")
    if not python.exists():
        run([sys.executable, "-m", "venv", VENV])
    if not venv_bin("uv").exists():
        run([python, "-m", "pip", "install", "--quiet", "uv"])
    return python


def install_digest() -> str:
    """Hash of everything the installed environment depends on."""
    digest = hashlib.sha256(sys.version.encode())
    for path in (REQUIREMENTS, PYPROJECT):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> Path:
    """A .venv matching requirements.txt and the editable package, with lsqlab's Jupyter server extension
    enabled; return its python."""
    python = ensure_uv()
    digest = install_digest()
    if not INSTALL_STAMP.exists() or INSTALL_STAMP.read_text() != digest:
        run([venv_bin("uv"), "pip", "install", "--python", python, "-r", REQUIREMENTS, "-e", "."], cwd=ROOT)
        SERVER_EXTENSION_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "lsqlab_jupyter" / SERVER_EXTENSION_CONFIG.name, SERVER_EXTENSION_CONFIG)
        INSTALL_STAMP.write_text(digest)
    return python


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for tools run from .venv: its bin first, caches and Jupyter runtime files in .cache."""
    JAX_CACHE.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(venv_bin("python").parent), os.environ.get("PATH", "")]),
        "JUPYTER_PREFER_ENV_PATH": "1",  # .venv's kernel and config before any user-wide ones
        "JUPYTER_RUNTIME_DIR": str(JUPYTER_RUNTIME),
        "JAX_COMPILATION_CACHE_DIR": str(JAX_CACHE),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
        **extra,
    }


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_lab_overrides() -> None:
    """Merge ``NO_NEWS`` into .venv's JupyterLab settings defaults (a user's own settings still win)."""
    overrides = json.loads(LAB_OVERRIDES.read_text()) if LAB_OVERRIDES.exists() else {}
    for plugin, settings in NO_NEWS.items():
        overrides.setdefault(plugin, {}).update(settings)
    LAB_OVERRIDES.parent.mkdir(parents=True, exist_ok=True)
    LAB_OVERRIDES.write_text(json.dumps(overrides, indent=2) + "\n")


def lab(args: list[str]) -> None:
    """Start JupyterLab from .venv on a free local port with a fresh token, without the news pop-up."""
    python = ensure_venv()
    write_lab_overrides()
    port, token = free_port(), secrets.token_urlsafe(24)
    command = [
        python, "-m", "jupyter", "lab", TOUR, "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *(["--allow-root"] if is_root() else []), *args,
    ]
    print(f"\nJupyterLab: http://127.0.0.1:{port}/lab/tree/{TOUR}?token={token}\n", flush=True)
    exec_tool(command, tool_env())


def ensure_chromium() -> None:
    """Install Debian's chromium for the browser check, or explain what is missing and stop."""
    if CHROMIUM.exists():
        return
    if CHROMIUM == DEBIAN_CHROMIUM and is_root() and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update"], env=env)
        run(["apt-get", "install", "-y", "chromium"], env=env)
        return
    sys.exit(
        f"The browser check needs chromium at {CHROMIUM}. Installing Debian's chromium needs root:\n"
        "    sudo apt-get update && sudo apt-get install -y chromium\n"
        "(or set LSQLAB_CHROMIUM to an existing Chromium or Chrome binary). Then run again:\n"
        "    python3 dev.py test"
    )


def test(args: list[str]) -> None:
    """Unit tests, the notebooks (run from the built wheel by tests/test_student_machine.py) and the browser
    check in one pytest run, in smoke mode, on two workers (pytest-xdist, one file per worker at a time;
    tests/conftest.py starts the long files first); the 25 slowest tests are listed at the end."""
    python = ensure_venv()
    ensure_chromium()
    command = [python, "-m", "pytest", "tests", "-n", "2", "--dist", "loadfile", "--durations", "25", *args]
    exec_tool(command, tool_env(LSQLAB_SMOKE="1", XLA_PYTHON_CLIENT_PREALLOCATE="false"))


def lock(args: list[str]) -> None:
    """Re-pin requirements.txt, then rewrite the conda environment files from it."""
    ensure_uv()
    run([
        venv_bin("uv"), "pip", "compile", "pyproject.toml", "--extra", "lab", "--extra", "dev",
        "--python-version", LOCK_PYTHON, "-o", "requirements.txt", "--quiet", *args,
    ], cwd=ROOT)
    pins = [line for line in REQUIREMENTS.read_text().splitlines() if "==" in line and not line.startswith("#")]
    for path in ENVIRONMENT_FILES:
        path.parent.mkdir(exist_ok=True)
        path.write_text(environment_yml(pins))
        print(f"wrote {path.relative_to(ROOT)}")


def environment_yml(pins: list[str]) -> str:
    """A conda environment with the locked pip packages listed inline (no fragile `-r` line)."""
    lines = [
        "# Generated by `python3 dev.py lock` from requirements.txt; edit pyproject.toml and re-lock instead.",
        "# Then install the package itself: `pip install .` (binder/postBuild does this on Binder).",
        "name: lsqlab",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={LOCK_PYTHON}",
        "  - pip",
        "  - pip:",
        *(f"      - {pin}" for pin in pins),
    ]
    return "\n".join(lines) + "\n"


COMMANDS = {"lab": lab, "test": test, "lock": lock}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        sys.exit(__doc__)
    if sys.version_info < (3, 11):
        sys.exit(f"dev.py needs Python >= 3.11: requirements.txt is locked for Python {LOCK_PYTHON}.")
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
