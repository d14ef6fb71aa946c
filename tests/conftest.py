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
    """Long tests first. Under ``pytest -n 2 --dist loadfile`` (``dev.py test``) each test file runs on one
    worker (the student's-machine tests share one wheel and venv, the browser tests one Jupyter server),
    and files are handed out in this order, so the two long files start at once and the short files fill
    in around them instead of a long file starting last."""
    items.sort(key=lambda item: not any(item.get_closest_marker(name) for name in LONG))
