"""The smoke switch: notebooks and slow tests run small when ``LSQLAB_SMOKE`` (or ``CI``) is set.

Smoke mode keeps the code path and shrinks only the sizes, e.g. ``m = scaled(2000, 200)``.
``LSQLAB_SMOKE`` wins when it is set (so ``LSQLAB_SMOKE=0`` runs in full on CI); otherwise ``CI``
decides. Truthy values: ``1``, ``true``, ``yes`` (any case).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")

TRUTHY: frozenset[str] = frozenset({"1", "true", "yes"})


def smoke_from_env(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks for smoke mode: ``LSQLAB_SMOKE`` if set, else ``CI``."""
    value = environ.get("LSQLAB_SMOKE")
    if value is None:
        value = environ.get("CI", "")
    return value.strip().lower() in TRUTHY


SMOKE: bool = smoke_from_env(os.environ)


def scaled(full: T, smoke: T) -> T:
    """``smoke`` in smoke mode, ``full`` otherwise."""
    return smoke if SMOKE else full
