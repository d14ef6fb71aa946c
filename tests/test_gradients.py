"""Gradients: the adjoint (reverse) and tangent (forward) rules of lsqlab.gradients.

Every rule is checked against two independent references in float64: the dense formulas of
lsqlab.dense (SVD, method.md section 3) and central finite differences along directions that keep
the rank of A fixed, A(e) = (U + e dU)(V + e dV)^T. Solves run at atol = btol = 1e-13, so solver
error (about cond(A)^2 * 1e-13) is far below the tolerances used here. Finite differences use the
fourth-order stencil (8 [f(h) - f(-h)] - [f(2h) - f(-2h)]) / 12h along directions scaled to a tenth
of the smallest nonzero singular value, so truncation (h^4 |f^(5)|) and rounding (eps |f| / h) both
stay near 1e-9 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lsqlab.lab.problems import matrix_with_spectrum
from lsqlab import SolverOptions, lsmr, lstsq
from lsqlab.dense import lstsq_dense, lstsq_dense_vjp, svd_solver

TIGHT = SolverOptions(atol=1e-13, btol=1e-13, maxiter=5000)

# (name, m, n, rank or None, damp, assume_full_rank, cond)
CASES = [
    ("tall", 40, 15, None, 0.0, True, 1e1),
    ("wide", 15, 40, None, 0.0, True, 1e1),
    ("square", 20, 20, None, 0.0, True, 1e1),
    ("ill-conditioned", 40, 15, None, 0.0, True, 1e4),
    ("damped tall", 40, 15, None, 0.3, True, 1e1),
    ("damped wide", 15, 40, None, 0.3, True, 1e1),
    ("rank-deficient damped", 40, 15, 6, 0.3, False, 1e1),
    ("rank-deficient, damp above ||A||_F", 40, 15, 6, 3.0, True, 1e1),
    ("rank-deficient wide damped", 15, 40, 6, 1e-3, False, 1e1),
    ("rank-deficient tall", 40, 15, 6, 0.0, False, 1e1),
    ("rank-deficient wide", 15, 40, 6, 0.0, False, 1e1),
    ("any-rank rule, full rank", 40, 15, None, 0.0, False, 1e1),
]
IDS = [c[0] for c in CASES]


def low_rank_factors(rng, m, n, rank, cond):
    k = rank if rank is not None else min(m, n)
    A = matrix_with_spectrum(rng, m, n, np.logspace(0, -np.log10(cond), k))
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    return U[:, :k] * s[:k], Vt[:k].T  # A = L R^T


def central_difference(f, h=1e-3):
    """Fourth-order central difference of e -> f(e) at 0 (f may return a pytree)."""
    fp, fm, f2p, f2m = f(h), f(-h), f(2 * h), f(-2 * h)
    return jax.tree.map(lambda a, b, c, d: (8 * (a - b) - (c - d)) / (12 * h), fp, fm, f2p, f2m)


def scaled_direction(rng, shape, size):
    d = rng.standard_normal(shape)
    return size * d / np.linalg.norm(d)


def loss_of(x, w):
    """A smooth loss whose cotangent g = w + x depends on the solution."""
    return jnp.dot(w, x) + 0.5 * jnp.dot(x, x)


@pytest.fixture(params=CASES, ids=IDS)
def case(request, rng):
    name, m, n, rank, damp, full_rank, cond = request.param
    L, R = low_rank_factors(rng, m, n, rank, cond)
    size = 0.1 / cond
    return dict(L=L, R=R, b=rng.standard_normal(m), w=rng.standard_normal(n), damp=damp,
                full_rank=full_rank, dL=scaled_direction(rng, L.shape, size),
                dR=scaled_direction(rng, R.shape, size), db=scaled_direction(rng, m, size))


def make_loss(case, solver=lsmr):
    def loss(A, b, damp):
        x, _ = lstsq(A, b, damp=damp, assume_full_rank=case["full_rank"], solver=solver, options=TIGHT)
        return loss_of(x, jnp.asarray(case["w"]))

    return loss


def along_direction(case, loss):
    """e -> loss(A(e), b + e db, damp + e [damp > 0]) with A(e) = (L + e dL)(R + e dR)^T."""
    ddamp = 1.0 if case["damp"] > 0 else 0.0

    def f(e):
        A = (case["L"] + e * case["dL"]) @ (case["R"] + e * case["dR"]).T
        return loss(A, case["b"] + e * case["db"], case["damp"] + e * ddamp)

    return jax.jit(f)


def test_reverse_mode_matches_dense_formulas(case):
    A = case["L"] @ case["R"].T
    loss = make_loss(case)
    gA, gb, gd = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(A), jnp.asarray(case["b"]), jnp.asarray(case["damp"]))
    x = lstsq_dense(A, case["b"], case["damp"])
    dA, db, dd = lstsq_dense_vjp(A, case["b"], case["damp"], case["w"] + x)
    scale = np.linalg.norm(dA) + np.linalg.norm(db)
    np.testing.assert_allclose(np.asarray(gA), dA, atol=1e-7 * scale)
    np.testing.assert_allclose(np.asarray(gb), db, atol=1e-7 * scale)
    np.testing.assert_allclose(float(gd), dd, atol=1e-7 * scale)


def test_forward_and_reverse_match_finite_differences(case):
    A = case["L"] @ case["R"].T
    loss = make_loss(case)
    f = along_direction(case, loss)
    fd = central_difference(f)
    forward = jax.jvp(f, (0.0,), (1.0,))[1]
    gA, gb, gd = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(A), jnp.asarray(case["b"]), jnp.asarray(case["damp"]))
    dA = case["dL"] @ case["R"].T + case["L"] @ case["dR"].T
    reverse = jnp.sum(gA * dA) + jnp.dot(gb, case["db"]) + (gd if case["damp"] > 0 else 0.0)
    np.testing.assert_allclose(float(forward), float(fd), rtol=1e-6)
    np.testing.assert_allclose(float(reverse), float(forward), rtol=1e-9)


def test_full_rank_rule_is_wrong_for_rank_deficient_undamped(rng):
    """The peers' error, reproduced: without the constant-rank correction the gradient is off."""
    L, R = low_rank_factors(rng, 40, 15, 6, 10.0)
    case = dict(L=L, R=R, b=rng.standard_normal(40), w=rng.standard_normal(15), damp=0.0,
                dL=scaled_direction(rng, L.shape, 0.01), dR=scaled_direction(rng, R.shape, 0.01),
                db=np.zeros(40))
    derivatives = {}
    for full_rank in (True, False):
        f = along_direction(dict(case, full_rank=full_rank), make_loss(dict(case, full_rank=full_rank)))
        derivatives[full_rank] = float(jax.jvp(f, (0.0,), (1.0,))[1])
        fd = float(central_difference(f))
    assert abs(derivatives[False] - fd) <= 1e-6 * abs(fd)
    assert abs(derivatives[True] - fd) >= 1e-2 * abs(fd)


@pytest.mark.parametrize("rank,damp", [(None, 0.0), (None, 0.5), (4, 0.0)], ids=["full", "damped", "rank-deficient"])
def test_check_grads_both_modes_through_a_function_operator(rng, rank, damp):
    """jax.test_util.check_grads on A = L R^T given as a function closing over (L, R): every
    perturbation of (L, R) keeps the rank, so finite differences are valid at any rank."""
    L, R = low_rank_factors(rng, 12, 7, rank, 2.0)  # well conditioned for check_grads' 2-point FD
    w = jnp.asarray(rng.standard_normal(7))

    def f(L, R, b, damp):
        x, _ = lstsq(lambda v: L @ (R.T @ v), b, damp=damp, x0=jnp.zeros(7),
                     assume_full_rank=rank is None, options=TIGHT)
        return loss_of(x, w)

    args = (jnp.asarray(L), jnp.asarray(R), jnp.asarray(rng.standard_normal(12)), jnp.asarray(damp))
    if damp == 0.0:
        check_grads(lambda L, R, b: f(L, R, b, 0.0), args[:3], order=1, modes=["fwd", "rev"], eps=1e-4)
    else:
        check_grads(f, args, order=1, modes=["fwd", "rev"], eps=1e-4)


@pytest.mark.parametrize("damp", [0.0, 0.5], ids=["tall", "damped"])
def test_hessian_vector_product_matches_finite_differences_of_gradient(rng, damp):
    L, R = low_rank_factors(rng, 20, 8, None, 10.0)
    A = jnp.asarray(L @ R.T)
    w = jnp.asarray(rng.standard_normal(8))

    def loss(A, b):
        x, _ = lstsq(A, b, damp=damp, options=TIGHT)
        return loss_of(x, w) + jnp.sum(x**3) / 3

    b = jnp.asarray(rng.standard_normal(20))
    dA, db = (jnp.asarray(scaled_direction(rng, shape, 0.01)) for shape in (A.shape, 20))
    grad = jax.grad(loss, argnums=(0, 1))
    hvp = jax.jvp(grad, (A, b), (dA, db))[1]
    fd = central_difference(lambda e: grad(A + e * dA, b + e * db))
    for exact, approx in zip(hvp, fd):
        scale = float(jnp.linalg.norm(approx))
        np.testing.assert_allclose(np.asarray(exact), np.asarray(approx), atol=1e-7 * scale)
    # Reverse-over-forward agrees with forward-over-reverse.
    directional = lambda A, b: jax.jvp(loss, (A, b), (dA, db))[1]
    rof = jax.grad(directional, argnums=(0, 1))(A, b)
    for a, c in zip(rof, hvp):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-8 * float(jnp.linalg.norm(c)))


def test_zero_rhs_gives_zero_solution_and_finite_gradients(rng):
    A = jnp.asarray(matrix_with_spectrum(rng, 20, 8, np.linspace(1, 2, 8)))
    b = jnp.zeros(20)
    sq = jax.grad(lambda A, b: jnp.sum(lstsq(A, b)[0] ** 2), argnums=(0, 1))(A, b)
    assert all(np.all(np.asarray(g) == 0) for g in sq)
    w = jnp.asarray(rng.standard_normal(8))
    gA, gb = jax.grad(lambda A, b: jnp.dot(w, lstsq(A, b, options=TIGHT)[0]), argnums=(0, 1))(A, b)
    assert np.all(np.isfinite(np.asarray(gA))) and np.all(np.isfinite(np.asarray(gb)))
    np.testing.assert_allclose(np.asarray(gb), np.linalg.pinv(np.asarray(A)).T @ np.asarray(w), atol=1e-9)


class CountingSolver:
    """LSMR that counts its runs (a host callback fires once per executed solve)."""

    def __init__(self):
        self.runs = 0

    def __call__(self, op, b, damp, x0, options):
        jax.debug.callback(self._count)
        return lsmr(op, b, damp, x0, options)

    def _count(self):
        self.runs += 1

    def __hash__(self):
        return id(self)


@pytest.mark.parametrize(
    "m,n,damp,full_rank,expected",
    [(30, 10, 0.0, True, 1 + 2), (30, 10, 0.4, True, 1 + 1), (10, 30, 0.4, True, 2 + 1),
     (10, 30, 0.0, True, 2 + 2), (30, 10, 0.0, False, 2 + 3), (30, 10, 0.4, False, 2 + 3)],
    ids=["tall", "tall damped", "wide damped", "wide", "any rank", "any rank damped"],
)
def test_solve_count_of_value_and_gradient(rng, m, n, damp, full_rank, expected):
    """Solves of value_and_grad (forward + backward): tall, two extra when undamped and one (with
    [A^T, damp I]) when damped; wide, y = (A A^T + damp^2 I)^{-1} b forward, then one backward solve
    damped or two undamped; any rank, t = A^{+T} x* (undamped) or y (damped) forward, and backward
    N^+ (two solves) or the row-space part of N^{-1} (a projection and a solve), plus the projector
    on null(A)."""
    A = jnp.asarray(matrix_with_spectrum(rng, m, n, np.linspace(1, 2, min(m, n))))
    b = jnp.asarray(rng.standard_normal(m))
    solver = CountingSolver()
    loss = lambda A, b, d: jnp.sum(lstsq(A, b, damp=d, solver=solver, assume_full_rank=full_rank)[0] ** 2)
    jax.block_until_ready(jax.value_and_grad(loss, argnums=(0, 1, 2))(A, b, jnp.asarray(damp)))
    jax.effects_barrier()
    assert solver.runs == expected


def test_rules_are_solver_agnostic_dense_svd_solver(case):
    """The same rules around a dense SVD solver give the same gradients as around LSMR."""
    A = jnp.asarray(case["L"] @ case["R"].T)
    args = (A, jnp.asarray(case["b"]), jnp.asarray(case["damp"]))
    g_lsmr = jax.grad(make_loss(case), argnums=(0, 1, 2))(*args)
    g_svd = jax.grad(make_loss(case, solver=svd_solver), argnums=(0, 1, 2))(*args)
    for a, c in zip(g_lsmr, g_svd):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-7 * (1 + float(jnp.linalg.norm(c))))


def test_gradients_under_jit_and_vmap(rng):
    As = jnp.asarray(np.stack([matrix_with_spectrum(rng, 20, 8, np.linspace(1, 3, 8)) for _ in range(3)]))
    bs = jnp.asarray(rng.standard_normal((3, 20)))
    w = jnp.asarray(rng.standard_normal(8))
    loss = lambda A, b: loss_of(lstsq(A, b, options=TIGHT)[0], w)
    batched = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(As, bs)
    for i in range(3):
        x = lstsq_dense(As[i], bs[i])
        dA, db, _ = lstsq_dense_vjp(As[i], bs[i], 0.0, np.asarray(w) + x)
        np.testing.assert_allclose(np.asarray(batched[0][i]), dA, atol=1e-8)
        np.testing.assert_allclose(np.asarray(batched[1][i]), db, atol=1e-8)


def test_gradient_error_follows_backward_tolerance(rng):
    """Loose backward solves give proportionally loose gradients; the forward solve is tight."""
    A = jnp.asarray(matrix_with_spectrum(rng, 60, 20, np.logspace(0, -2, 20)))
    b = jnp.asarray(rng.standard_normal(60))
    w = rng.standard_normal(20)
    x = lstsq_dense(A, b)
    _, exact, _ = lstsq_dense_vjp(A, b, 0.0, w + x)
    errors = []
    for tol in (1e-3, 1e-6, 1e-10):
        backward = SolverOptions(atol=tol, btol=tol, maxiter=5000)
        g = jax.grad(lambda b: loss_of(lstsq(A, b, backward=backward, options=TIGHT)[0], jnp.asarray(w)))(b)
        errors.append(np.linalg.norm(np.asarray(g) - exact) / np.linalg.norm(exact))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6 and errors[0] > 1e-6


def test_unrolled_autodiff_of_a_converged_solve_approaches_the_adjoint(rng):
    """Differentiating through 300 scan steps (the costly baseline) gives the adjoint's gradient."""
    from lsqlab.lsmr import lsmr_fixed_iterations
    from lsqlab.operators import linear_map, matmul

    A = jnp.asarray(matrix_with_spectrum(rng, 50, 20, np.logspace(0, -1, 20)))
    b = jnp.asarray(rng.standard_normal(50))
    w = jnp.asarray(rng.standard_normal(20))
    options = SolverOptions(atol=1e-14, btol=1e-14)

    def unrolled(A, b):
        x, _ = lsmr_fixed_iterations(linear_map(matmul, A, A.shape, A.dtype), b, 0.0, 300, options)
        return loss_of(x, w)

    adjoint = jax.grad(lambda A, b: loss_of(lstsq(A, b, options=TIGHT)[0], w), argnums=(0, 1))(A, b)
    for a, u in zip(adjoint, jax.grad(unrolled, argnums=(0, 1))(A, b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(a), atol=1e-6 * float(jnp.linalg.norm(a)))


# ---------------------------------------------------------------- every damping, against the SVD

SWEEP_DAMPS = [0.0, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0, 10.0]
SWEEP_TOL = SolverOptions(atol=1e-12, btol=1e-12, maxiter=500)


def exactly_rank_deficient(rng, m, n, rank):
    """An m x n matrix of rank exactly ``rank`` in floating point: a block repeated (columns of a tall
    A, rows of a wide one), so null(A) holds no rounding-level singular values."""
    if m >= n:
        B = rng.standard_normal((m, rank))
        return np.concatenate([B] * (n // rank), axis=1)
    B = rng.standard_normal((rank, n))
    return np.concatenate([B] * (m // rank), axis=0)


def svd_derivatives(A, b, damp, g, dA, db, ddamp, rank):
    """x*, its cotangents (dA, db, ddamp) for dmu/dx* = g and its tangent along (dA, db, ddamp), from the
    full SVD A = [U_r U_0] diag(s) [V_r V_0]^T, written so that nothing cancels:
        x* = V_r f U_r^T b,  f = s / (s^2 + damp^2),  r = U_0 U_0^T b + damp^2 y,
        y = U_0 U_0^T b / damp^2 + U_r diag(1 / (s^2 + damp^2)) U_r^T b   (y = r / damp^2; at damp = 0 the
            limit (A A^T)^+ b, valid when U_0^T b = 0 or null(A) = 0),
        x' = V_r diag(1 / (s^2 + damp^2)) V_r^T [A^T (b' - A' x*) + A'^T r - 2 damp damp' x*] + V_0 V_0^T A'^T y,
        dA = r s_r^T + y (V_0 V_0^T g)^T - p x*^T,  s_r = V_r diag(1 / (s^2 + damp^2)) V_r^T g,
        db = p = U_r f V_r^T g,  ddamp = -2 damp <s_r, x*>."""
    U, s, Vt = np.linalg.svd(A)
    Ur, U0, s, Vr, V0 = U[:, :rank], U[:, rank:], s[:rank], Vt[:rank].T, Vt[rank:].T
    inv = 1 / (s**2 + damp**2)
    filt = s * inv
    x = Vr @ (filt * (Ur.T @ b))
    outside = U0 @ (U0.T @ b)
    y = (outside / damp**2 if damp > 0 else 0.0) + Ur @ (inv * (Ur.T @ b))
    r = outside + damp**2 * Ur @ (inv * (Ur.T @ b))
    s_row = Vr @ (inv * (Vr.T @ g))
    p = Ur @ (filt * (Vr.T @ g))
    grad_A = np.outer(r, s_row) + np.outer(y, V0 @ (V0.T @ g)) - np.outer(p, x)
    grad_damp = -2 * damp * np.dot(s_row, x)
    v = A.T @ (db - dA @ x) + dA.T @ r - 2 * damp * ddamp * x
    dx = Vr @ (inv * (Vr.T @ v)) + V0 @ (V0.T @ (dA.T @ y))
    return x, (grad_A, p, grad_damp), dx


def relative(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


SWEEP_CASES = [(shape, rank, damp) for shape, rank in (((40, 12), None), ((12, 40), None), ((40, 12), 6), ((12, 40), 6))
               for damp in SWEEP_DAMPS if rank is None or damp > 0]


@pytest.mark.parametrize("shape,rank,damp", SWEEP_CASES,
                         ids=[f"{'tall' if s[0] > s[1] else 'wide'}{'' if r is None else f' rank {r}'}-{d:g}"
                              for s, r, d in SWEEP_CASES])
def test_derivatives_at_every_damping_match_the_svd(rng, shape, rank, damp):
    """Reverse (d/dA, d/db, d/ddamp) and forward mode at damp = 0 and 1e-10 ... 10: relative error < 1e-6
    at tolerance 1e-12 (measured about 1e-14 at every damp). Rank-deficient problems use
    ``assume_full_rank=False`` and damp > 0 (at damp = 0 they have the constant-rank derivative, checked
    against rank-preserving finite differences in test_reverse_mode_matches_dense_formulas). For them d/ddamp = -2 damp <N^{-1} g, x*> sums terms of size
    ||g|| ||x*|| / damp^2 that cancel on null(A): rounding leaves eps ||g|| ||x*|| / damp, relative
    eps / damp^2 (||A|| = O(1)), so it is checked where that is below 1e-7, damp >= 1e-4."""
    m, n = shape
    A = rng.standard_normal(shape) if rank is None else exactly_rank_deficient(rng, m, n, rank)
    b, g = rng.standard_normal(m), rng.standard_normal(n)
    dA, db, ddamp = rng.standard_normal(shape), rng.standard_normal(m), 0.7
    x_ref, (gA_ref, gb_ref, gd_ref), dx_ref = svd_derivatives(A, b, damp, g, dA, db, ddamp, rank or min(m, n))

    def solve(A, b, d):
        return lstsq(A, b, damp=d, assume_full_rank=rank is None, options=SWEEP_TOL)[0]

    args = (jnp.asarray(A), jnp.asarray(b), jnp.asarray(damp))
    gA, gb, gd = jax.grad(lambda *a: jnp.dot(jnp.asarray(g), solve(*a)), argnums=(0, 1, 2))(*args)
    x, dx = jax.jvp(solve, args, (jnp.asarray(dA), jnp.asarray(db), jnp.asarray(ddamp)))
    assert relative(x, x_ref) < 1e-9
    assert relative(gA, gA_ref) < 1e-6 and relative(gb, gb_ref) < 1e-6
    assert relative(dx, dx_ref) < 1e-6
    if damp == 0:
        assert abs(float(gd)) < 1e-12
    elif rank is None or damp >= 1e-4:
        assert abs(float(gd) - gd_ref) < 1e-6 * abs(gd_ref)


@pytest.mark.parametrize("damp", [1e-6, 1e-3, 1.0])
@pytest.mark.parametrize("shape", [(40, 12), (12, 40)], ids=["tall", "wide"])
def test_float32_derivatives_at_small_damping(rng, shape, damp):
    """float32 (tolerance 1e-6): d/db and d/ddamp within 1e-3 of the float64 SVD values at every damping
    (the damped shortcut gave errors of order 1e-6 (||A|| / damp)^2 here)."""
    m, n = shape
    A, b, g = rng.standard_normal(shape), rng.standard_normal(m), rng.standard_normal(n)
    _, (_, gb_ref, gd_ref), _ = svd_derivatives(A, b, damp, g, np.zeros(shape), np.zeros(m), 0.0, min(m, n))
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    loss = lambda b_, d: jnp.dot(f32(g), lstsq(f32(A), b_, damp=d, options=SolverOptions(atol=1e-6, btol=1e-6, maxiter=200))[0])
    gb, gd = jax.grad(loss, argnums=(0, 1))(f32(b), f32(damp))
    assert gb.dtype == jnp.float32
    assert relative(gb, gb_ref) < 1e-3
    assert abs(float(gd) - gd_ref) < 1e-3 * abs(gd_ref) + 1e-5
