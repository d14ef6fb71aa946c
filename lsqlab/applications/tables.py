"""Results tables: one row per run, summarised over seeds as mean and spread, written as CSV + Markdown.

Each application declares its tables as :class:`Table` records (``TABLES`` in its module): how a budget
becomes runs, which columns are settings and which are metrics, and their plain-language names.
:func:`summarize` groups runs by the setting columns and reports, per metric, the mean and the sample
standard deviation over the group (ddof = 1; 0 for one run). :func:`paper` renders a summary, the same in
the ``.md`` files and the notebooks: plain column names, 3 significant digits, the best entry in bold.
:func:`main` is the command behind every ``benchmarks/app_*.py``.

The recorded tables (full-budget runs of ``benchmarks/app_*.py`` and ``scale_sparsity.py --size medium``)
ship with the package in ``lsqlab/applications/results/``; :func:`recorded` is the one way to find them,
from a checkout or an installed wheel alike.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NamedTuple

from lsqlab.lab.smoke import SMOKE

RECORDED = Path(__file__).resolve().parent / "results"

_ARROW = {"low": " ↓", "high": " ↑"}
_SPACE = "\u00a0"  # a non-breaking space: "mean ± std" never wraps over two lines


def summarize(runs: Sequence[dict], by: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Group ``runs`` by the columns ``by`` (first-seen order); per metric add ``<m>_mean``, ``<m>_std``, and ``n``."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run[key] for key in by), []).append(run)
    rows = []
    for key, members in groups.items():
        row = dict(zip(by, key), n=len(members))
        for metric in metrics:
            values = [float(member[metric]) for member in members]
            mean = sum(values) / len(values)
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, spread
        rows.append(row)
    return rows


class Table(NamedTuple):
    """One results table of an application: what its rows are and how to show them.

    name: file stem (``<name>_runs.csv``, ``<name>.csv``, ``<name>.md``); by: the setting columns a summary
    groups runs by; metrics: the columns summarised as mean and spread; rows: ``budget -> runs`` (one dict
    per run); columns: column -> (plain-language header, which entry is best: "low", "high" or None);
    ranked_within: the setting column within whose values entries are ranked, and the caption's words for
    it; references: methods that are references rather than contenders (never marked best).
    """

    name: str
    by: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: Callable[[Any], list[dict]]
    columns: dict[str, tuple[str, str | None]]
    ranked_within: tuple[str, str] | None = None
    references: frozenset[str] = frozenset()


def paper(rows: Sequence[dict], table: Table, figures: int = 3) -> str:
    """Summarised ``rows`` of ``table`` as a Markdown table: plain headers (↓/↑: lower/higher is better),
    each mean to ``figures`` significant digits with its standard deviation to the same decimal place, the
    best mean of each ranked column in bold (ties at the shown precision all bold; per
    ``table.ranked_within`` group, ``table.references`` never), and a caption saying over how many runs."""
    if not rows:
        raise ValueError(f"no rows to show for results table {table.name!r}")
    metrics = [key[: -len("_mean")] for key in rows[0] if key.endswith("_mean")]
    by = [key for key in rows[0] if key != "n" and not key.endswith(("_mean", "_std"))]
    missing = [key for key in (*by, *metrics) if key not in table.columns]
    if missing:
        raise ValueError(f"results table {table.name!r} has no plain-language name for column(s) {missing}")
    shown = {(i, m): _mean_and_spread(row[f"{m}_mean"], row[f"{m}_std"], row["n"], figures)
             for i, row in enumerate(rows) for m in metrics}
    means = {(i, m): _mean_and_spread(row[f"{m}_mean"], 0.0, 1, figures) for i, row in enumerate(rows) for m in metrics}
    best = _best(rows, table, metrics, means)
    header = [table.columns[key][0] for key in by]
    header += [table.columns[m][0] + _ARROW.get(table.columns[m][1], "") for m in metrics]
    counts = {int(row["n"]) for row in rows}
    if len(counts) > 1:
        header.append("runs")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(by) + "--:|" * (len(header) - len(by))]
    for i, row in enumerate(rows):
        cells = [_setting(row[key]).replace("|", "\\|") for key in by]
        cells += [f"**{shown[i, m]}**" if (i, m) in best else shown[i, m] for m in metrics]
        lines.append("| " + " | ".join(cells + ([str(int(row["n"]))] if len(counts) > 1 else [])) + " |")
    return "\n".join(lines) + "\n\n" + _caption(table, counts) + "\n"


def write(runs: Sequence[dict], table: Table, directory: Path) -> list[dict]:
    """Write ``<name>_runs.csv`` (every run), ``<name>.csv`` (the summary) and ``<name>.md`` (it, as
    :func:`paper` shows it) into ``directory``; return the summary."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, table.by, table.metrics)
    _write_csv(runs, directory / f"{table.name}_runs.csv")
    _write_csv(summary, directory / f"{table.name}.csv")
    (directory / f"{table.name}.md").write_text(paper(summary, table))
    return summary


def main(app: ModuleType, script: str, argv: Sequence[str] | None = None) -> list[dict]:
    """The command behind every ``benchmarks/app_*.py`` (``script``: its ``__file__``): one of ``app.TABLES``
    (``--table``, default the first) on ``app.Budget()``, or on ``app.SMOKE`` with ``--smoke`` (or
    LSQLAB_SMOKE=1 / CI=1); written as :func:`output_directory` says; the summary is printed and returned."""
    names = list(app.TABLES)
    parser = argparse.ArgumentParser(description=(app.__doc__ or app.__name__).strip().splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the smoke budget (also LSQLAB_SMOKE=1 or CI=1)")
    parser.add_argument("--table", choices=names, default=names[0], help=f"which table (default {names[0]})")
    add_output_options(parser, script)
    args = parser.parse_args(argv)
    smoke = args.smoke or SMOKE
    out = output_directory(parser, args, smoke)
    table = app.TABLES[args.table]
    started = time.perf_counter()
    runs = table.rows(app.SMOKE if smoke else app.Budget())
    summary = write(runs, table, out)
    print(paper(summary, table), flush=True)
    print(f"{len(runs)} runs in {time.perf_counter() - started:.0f} s; {table.name} written to {out}", flush=True)
    return summary


def recorded(name: str) -> Path:
    """The recorded results file ``name`` (e.g. ``"gp.csv"``), shipped with lsqlab next to this module:
    the same from a checkout, an installed wheel or any working directory."""
    path = RECORDED / name
    if not path.is_file():
        present = sorted(p.name for p in RECORDED.glob("*")) if RECORDED.is_dir() else []
        raise FileNotFoundError(f"no recorded results file {name!r} in {RECORDED}; recorded files: {present}")
    return path


def read(name: str, directory: Path | None = None) -> list[dict]:
    """The summary table ``<name>.csv`` (the recorded one unless ``directory`` is given) with numbers
    parsed back to float where they parse."""
    path = recorded(f"{name}.csv") if directory is None else directory / f"{name}.csv"
    with open(path, newline="") as handle:
        return [{key: _parse(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def add_output_options(parser: argparse.ArgumentParser, script: str) -> None:
    """``--out DIR`` and ``--record`` for a results command in ``benchmarks/`` (``script``: its ``__file__``).

    Without either it writes into ``artifacts/results/`` of the script's checkout (``artifacts/results/smoke/``
    on a smoke budget), which git ignores; only ``--record`` overwrites the recorded tables."""
    scratch = Path(script).resolve().parents[1] / "artifacts" / "results"
    parser.add_argument("--out", type=Path, default=None,
                        help=f"directory for the tables (default {scratch}, or its smoke/ on a smoke budget)")
    parser.add_argument("--record", action="store_true",
                        help=f"overwrite the recorded tables shipped with lsqlab ({RECORDED}); full budget only")
    parser.set_defaults(scratch=scratch)


def output_directory(parser: argparse.ArgumentParser, args: argparse.Namespace, smoke: bool,
                     partial: str | None = None) -> Path:
    """Where the command writes (see :func:`add_output_options`); ``parser.error`` for ``--record`` on a
    smoke budget, on a ``partial`` run (the reason given) or with ``--out``, and for ``--out`` naming the
    recorded folder without ``--record``."""
    if args.record:
        if smoke:
            parser.error("--record overwrites the recorded tables: refused on a smoke budget "
                         "(--smoke, LSQLAB_SMOKE=1 or CI=1)")
        if partial:
            parser.error(f"--record overwrites the recorded tables: refused for {partial}")
        if args.out is not None:
            parser.error(f"--record writes to {RECORDED}; drop --out")
        return RECORDED
    out = args.out or (args.scratch / "smoke" if smoke else args.scratch)
    if out.resolve() == RECORDED.resolve():
        parser.error(f"--out {out} is the recorded tables' folder: pass --record (without --out) to overwrite them")
    return out


def _write_csv(rows: Sequence[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _parse(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _mean_and_spread(mean: float, std: float, n: float, figures: int) -> str:
    """``mean`` to ``figures`` significant digits and ``std`` (left out for one run) to the same decimal
    place: ``0.0238 ± 0.0026``, ``250 ± 12``, ``(5.93 ± 0.79)×10⁻⁴`` outside [0.01, 10⁴); "-": NaN."""
    mean, std = float(mean), float(std)
    if math.isnan(mean):
        return "-"
    scale = abs(mean) or abs(std)
    exponent = math.floor(math.log10(scale)) if scale > 0 else 0
    spread = int(n) > 1
    if mean.is_integer() and abs(mean) < 10**4 and (not spread or std == 0):
        return str(int(mean)) + (f"{_SPACE}±{_SPACE}0" if spread else "")  # counts, exact zeros
    if -2 <= exponent < 4:
        decimals = max(figures - 1 - exponent, 0)
        text = f"{mean:.{decimals}f}"
        if spread:
            rounded = f"{std:.{decimals}f}"
            text += f"{_SPACE}±{_SPACE}" + ("0" if float(rounded) == 0 else rounded)
        return text
    power = "×10" + str(exponent).translate(_SUPERSCRIPT)
    mantissa = f"{mean / 10**exponent:.{figures - 1}f}"
    if not spread:
        return mantissa + power
    return f"({mantissa}{_SPACE}±{_SPACE}{std / 10**exponent:.{figures - 1}f}){power}"


def _best(rows: Sequence[dict], table: Table, metrics: Sequence[str], shown: dict) -> set[tuple[int, str]]:
    """(row, metric) of the best mean per ranked metric and group; ``shown``: each mean as displayed,
    so that ties at the shown precision are all marked."""
    within = table.ranked_within[0] if table.ranked_within else None
    marked = set()
    for metric in metrics:
        direction = table.columns[metric][1]
        if direction is None:
            continue
        groups: dict[object, list[int]] = {}
        for i, row in enumerate(rows):
            value = float(row[f"{metric}_mean"])
            if row.get("method") not in table.references and not math.isnan(value):
                groups.setdefault(row.get(within) if within else None, []).append(i)
        for members in groups.values():
            pick = min if direction == "low" else max
            winner = pick(members, key=lambda i: float(rows[i][f"{metric}_mean"]))
            marked |= {(i, metric) for i in members if shown[i, metric] == shown[winner, metric]}
    return marked


def _setting(value: object) -> str:
    """A setting column's value: integral floats as integers (16.0 -> 16)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _caption(table: Table, counts: set[int]) -> str:
    if counts == {1}:
        runs = "one run per row"
    elif len(counts) == 1:
        runs = f"mean ± standard deviation over {min(counts)} runs"
    else:
        runs = "mean ± standard deviation over the runs counted in the last column"
    where = f" for each {table.ranked_within[1]}" if table.ranked_within else ""
    left_out = f" ({', '.join(sorted(table.references))}: a reference, not ranked)" if table.references else ""
    return f"*{runs[0].upper() + runs[1:]}; ↓/↑: lower/higher is better; bold: the best{where}{left_out}.*"
