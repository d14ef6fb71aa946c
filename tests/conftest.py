"""Test set-up: float64 everywhere unless a test asks for float32; shared problem builders."""

import jax
import numpy as np
import pytest

from browser_helpers import chromium, lab_page, lab_server  # noqa: F401 (session-wide browser fixtures)

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20251027)
