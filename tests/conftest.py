"""Test set-up: float64 everywhere unless a test asks for float32; shared problem builders."""

import jax
import numpy as np
import pytest

from browser_helpers import chromium, lab_server  # noqa: F401 (session-wide browser fixtures)

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20251027)


@pytest.fixture(autouse=True, scope="module")
def fresh_compilation_caches():
    """Drop JAX's in-memory caches of compiled executables after each test module. Each XLA:CPU
    executable holds memory maps; the whole suite in one process compiles enough of them to reach the
    kernel's limit (vm.max_map_count, 65530: measured ~63,000 maps before this fixture), after which
    LLVM cannot allocate and the process aborts. The persistent cache on disk keeps recompiling cheap."""
    yield
    jax.clear_caches()


LONG = ("student", "browser")  # markers of the long tests


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Long tests first: under ``pytest -n 2 --dist loadgroup`` (``dev.py test``) the two workers start on
    them and the short tests fill in around them, instead of one long test starting last. The student's-
    machine tests stay on one worker (one wheel built from the checkout, one venv switched between modes);
    browser tests spread, each worker starting its own Jupyter server (tests/browser_helpers.py)."""
    for item in items:
        if item.get_closest_marker("student"):
            item.add_marker(pytest.mark.xdist_group("student"))
    items.sort(key=lambda item: not any(item.get_closest_marker(name) for name in LONG))
