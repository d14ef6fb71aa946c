"""What a compiled program sends between devices: its collective operations, read from the HLO.

    collectives(jax.jit(f).lower(*args).compile())  ->  {"all-reduce f64[400]": 2, ...}

XLA's SPMD partitioner turns a program on sharded arrays into one program per device plus the
collectives that move data between them (all-reduce: sum partial results; all-gather: assemble a
sharded array on every device; reduce-scatter, all-to-all, collective-permute: reshuffle shards).
An operation inside a loop (LSMR's iteration) appears once here and runs once per iteration.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

OPERATIONS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_LINE = re.compile(r"=\s*(.*?)\s(" + "|".join(OPERATIONS) + r")(?:-start)?\(")
_SHAPE = re.compile(r"\b([a-z]+\d*\[[\d,]*\])")


def collectives(compiled: Any) -> dict[str, int]:
    """``"operation dtype[shape]"`` -> how often it appears in ``compiled`` (a compiled JAX program or
    its HLO text); a combined operation (a tuple of arrays) counts once for each array it moves."""
    text = compiled if isinstance(compiled, str) else compiled.as_text()
    found = Counter()
    for line in text.splitlines():
        match = _LINE.search(line)
        if match:
            for shape in _SHAPE.findall(match.group(1)):
                found[f"{match.group(2)} {shape}"] += 1
    return dict(sorted(found.items()))


def largest_transfer(compiled: Any) -> int:
    """The most elements one collective of ``compiled`` produces (0 when it has none): a gathered or
    summed array, or a device's piece of a reshuffled one. A program that never moves a sharded
    matrix keeps this at the size of a vector."""
    return max((_elements(key.split(" ", 1)[1]) for key in collectives(compiled)), default=0)


def _elements(shape: str) -> int:
    dims = [int(d) for d in shape[shape.index("[") + 1:-1].split(",") if d]
    count = 1
    for d in dims:
        count *= d
    return count
