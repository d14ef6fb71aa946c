"""Small problems with known answers, shared by the tests, the notebooks and the benchmarks."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def orthonormal_factors(rng: np.random.Generator, m: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Random U (m x k) and V (n x k) with orthonormal columns (QR of Gaussian matrices, U first)."""
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return U, V


def matrix_with_spectrum(rng: np.random.Generator, m: int, n: int, singular_values: np.ndarray) -> np.ndarray:
    """A = U diag(s) V^T (m x n) with the given nonzero singular values s and random singular vectors."""
    singular_values = np.asarray(singular_values, np.float64)
    U, V = orthonormal_factors(rng, m, n, len(singular_values))
    return (U * singular_values) @ V.T


class EqualityQP(NamedTuple):
    """min 1/2 x^T Q x + q^T x  subject to  C x = e, with its KKT solution x*."""

    Q: np.ndarray
    q: np.ndarray
    C: np.ndarray
    e: np.ndarray
    solution: np.ndarray

    def loss(self, x):
        return 0.5 * x @ (self.Q @ x) + self.q @ x

    def constraint(self, x):
        return self.C @ x - self.e


def equality_qp(rng: np.random.Generator, n: int = 12, m: int = 4, ridge: float = 0.1) -> EqualityQP:
    """Q = M M^T / n + ridge I with Gaussian M; x* from the KKT system [[Q, C^T], [C, 0]] [x; mu] = [-q; e]."""
    M = rng.standard_normal((n, n))
    Q, q = M @ M.T / n + ridge * np.eye(n), rng.standard_normal(n)
    C, e = rng.standard_normal((m, n)), rng.standard_normal(m)
    kkt = np.block([[Q, C.T], [C, np.zeros((m, m))]])
    return EqualityQP(Q, q, C, e, np.linalg.solve(kkt, np.concatenate([-q, e]))[:n])
