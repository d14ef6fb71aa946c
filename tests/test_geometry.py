"""The manifold maths: step parts are orthogonal, the null-space method lands on c = 0, the others do not."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsqlab.lab.geometry import (
    MANIFOLDS, check_start, check_step, descend, grid_values, step_parts, user_manifold,
)
from lsqlab.widgets.manifold_explorer import DEFAULT_EXPRESSION

STARTS = {2: np.array([-1.5, -1.2]), 3: np.array([-1.5, -1.2, 0.3])}


@pytest.mark.parametrize("name", ["circle", "ellipse", "sphere", "torus"])
def test_step_parts_split_into_tangent_and_normal(name):
    manifold = MANIFOLDS[name]
    parts = step_parts(manifold, STARTS[manifold.dim], 0.1, 0.5)
    n = parts.constraint_normal
    assert abs(parts.tangent @ n) < 1e-10 * np.linalg.norm(parts.tangent)
    np.testing.assert_allclose(parts.normal, (parts.normal @ n) * n, atol=1e-10)
    np.testing.assert_allclose(parts.tangent + parts.normal, parts.step)
    np.testing.assert_allclose(parts.raw - (parts.raw @ n) * n, parts.tangent, atol=1e-10)
    # first order: c(theta) + J d = (1 - gamma) c(theta)
    theta = jnp.asarray(STARTS[manifold.dim])
    c = float(manifold.scalar_constraint(theta))
    grad_c = np.asarray(jax.grad(manifold.scalar_constraint)(theta))
    np.testing.assert_allclose(c + grad_c @ parts.step, 0.5 * c, rtol=1e-8)


@pytest.mark.parametrize("name", ["circle", "torus"])
def test_null_space_lands_on_the_manifold_and_the_others_do_not(name):
    manifold = MANIFOLDS[name]
    paths = descend(manifold, STARTS[manifold.dim], 60, 0.1, 0.5, 2.0)
    c = lambda theta: abs(float(manifold.scalar_constraint(jnp.asarray(theta))))
    assert paths.null_space.shape == (61, manifold.dim)
    assert c(paths.null_space[-1]) < 1e-6 and paths.violation[-1] < 1e-6
    assert c(paths.penalty[-1]) > 1e-2  # the penalty's bias ~ 1/mu
    assert c(paths.tangent_only[-1]) > 1e-2  # drifts off a curved manifold
    np.testing.assert_array_equal(paths.null_space[0], STARTS[manifold.dim])


def test_tangent_only_is_the_null_space_method_with_gamma_zero():
    circle = MANIFOLDS["circle"]
    paths = descend(circle, STARTS[2], 10, 0.1, 0.0, 2.0)
    np.testing.assert_allclose(paths.null_space, paths.tangent_only)


def test_user_manifold_matches_its_expression():
    curve = user_manifold("x**4 + y**4 + 0.5*sin(3*x) - 1", 2)
    theta = jnp.array([0.3, -0.7])
    np.testing.assert_allclose(curve.constraint(theta), [0.3**4 + 0.7**4 + 0.5 * np.sin(0.9) - 1])
    surface = user_manifold("x**2 + y**2 + z**2 - 1", 3)
    paths = descend(surface, STARTS[3], 40, 0.1, 0.5, 2.0)
    np.testing.assert_allclose(paths.null_space, descend(MANIFOLDS["sphere"], STARTS[3], 40, 0.1, 0.5, 2.0).null_space)


@pytest.mark.parametrize("expression, dim", [
    (DEFAULT_EXPRESSION[2], 2), (DEFAULT_EXPRESSION[3], 3), ("x**4 + y**4 - 1", 2), ("sqrt(x**2 + y**2) - pi/3", 2),
    ("exp(-x**2) - y**-2 + 2.5e-1", 2), ("abs(x) + abs(y) - tanh(x*y) - 1", 2), ("-x + +z - log(1 + y**2)", 3),
    ("x**16 + y**0.5 - 1/2**3", 2), ("cos(x) * tan(y) - 1/(1 + x**2)", 2),
])
def test_parser_accepts_arithmetic_and_computes_it(expression, dim):
    theta = np.array([0.3, 0.4, 0.5])[:dim]
    names = dict(zip("xyz", theta), pi=np.pi, sin=np.sin, cos=np.cos, tan=np.tan, exp=np.exp, log=np.log,
                 sqrt=np.sqrt, abs=abs, tanh=np.tanh)
    expected = eval(expression, {"__builtins__": {}}, names)  # trusted test input: Python's own reading
    np.testing.assert_allclose(user_manifold(expression, dim).scalar_constraint(jnp.asarray(theta)), expected,
                               rtol=1e-14)


@pytest.mark.parametrize("expression, words", [
    ("x + 1/0", "1/0 is not a finite number"),  # ZeroDivisionError before
    ("x + 10**400", "exponent in \\*\\* must be a number between -16 and 16, got 400"),  # OverflowError
    ("sin()", "sin takes exactly one argument"),  # TypeError
    ("*".join(["x"] * 3000), "5999 characters long"),  # RecursionError
    ("x + 9**9**8", "got 9\\*\\*8"),  # a Python big-integer power: minutes
    ("x**y", "got y"), ("x + 1e400", "1e400 is not a finite number"), ("x + log(0)", "log\\(0\\) is not a finite"),
    ("y + (-8)**0.5", "is not a finite number"), ("sin(x, y)", "exactly one argument"), ("-" * 40 + "x", "nested"),
    ("x +", "cannot read"), ("", "empty"), ("x + q", "'q' is not a known name: use x, y, pi"),
    ("x + sin", "call it"), ("x.real", "Attribute is not allowed"), ("x // 2", "FloorDiv is not allowed"),
    ("__import__('os')", "can be called, not __import__"), ("x + z", "'z' is not a known name"),
    ("'a'", "not a number"), ("True + x", "not a number"),
])
def test_parser_rejects_unbounded_or_unknown_input_with_a_message(expression, words):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=words):
        user_manifold(expression, 2)
    assert time.perf_counter() - start < 0.1


def test_checks_name_bad_settings():
    circle = MANIFOLDS["circle"]
    for step in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="step size"):
            check_step(step, 0.5, 1.0)
    with pytest.raises(ValueError, match="far off"):
        check_start(circle, np.array([10.0, 0.0]))
    with pytest.raises(ValueError, match="grad c = 0"):
        check_start(circle, np.array([0.0, 0.0]))
    check_start(circle, STARTS[2])


def test_grid_values_are_c_and_f_on_the_grid():
    c, f = grid_values(MANIFOLDS["circle"], 5)
    axis = np.linspace(-2.5, 2.5, 5)
    np.testing.assert_allclose(c, axis[:, None] ** 2 + axis[None, :] ** 2 - 1)
    assert f.shape == (5, 5) and f.min() >= 0
