"""Test set-up: float64 everywhere unless a test asks for float32; shared problem builders."""

import jax
import numpy as np
import pytest

from browser_helpers import chromium, lab_page, lab_server  # noqa: F401 (session-wide browser fixtures)

jax.config.update("jax_enable_x64", True)


def matrix_with_spectrum(rng: np.random.Generator, m: int, n: int, singular_values: np.ndarray) -> np.ndarray:
    """U diag(s) V^T with orthonormal random U (m x k), V (n x k), k = len(s)."""
    k = len(singular_values)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (U * singular_values) @ V.T


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20251027)
