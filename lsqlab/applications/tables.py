"""Results tables: one row per run, summarised over seeds as mean and spread, written as CSV + Markdown.

A table is a list of dicts with the same keys. :func:`summarize` groups runs by the setting columns and
reports, per metric, the mean and the sample standard deviation over the group (ddof = 1; 0 for one run).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


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


def markdown(rows: Sequence[dict], metrics: Sequence[str], by: Sequence[str], digits: int = 3) -> str:
    """A Markdown table of summarised rows: setting columns, then ``mean ± std`` per metric ("-" where
    the mean is NaN: the metric does not apply), then n."""
    header = [*by, *metrics, "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[key]) for key in by]
        cells += [_cell(row[f"{m}_mean"], row[f"{m}_std"], digits) for m in metrics]
        lines.append("| " + " | ".join([*cells, str(row["n"])]) + " |")
    return "\n".join(lines) + "\n"


def write(runs: Sequence[dict], name: str, by: Sequence[str], metrics: Sequence[str], directory: Path = RESULTS) -> list[dict]:
    """Write ``<name>_runs.csv`` (every run), ``<name>.csv`` and ``<name>.md`` (the summary); return the summary."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, by, metrics)
    _write_csv(runs, directory / f"{name}_runs.csv")
    _write_csv(summary, directory / f"{name}.csv")
    (directory / f"{name}.md").write_text(markdown(summary, metrics, by))
    return summary


def read(name: str, directory: Path = RESULTS) -> list[dict]:
    """The summary table ``<name>.csv`` with numbers parsed back to float where they parse."""
    with open(directory / f"{name}.csv", newline="") as handle:
        return [{key: _parse(value) for key, value in row.items()} for row in csv.DictReader(handle)]


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


def _cell(mean: float, std: float, digits: int) -> str:
    """``mean ± std``; "-" for a metric a method does not have (NaN mean)."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}g} ± {std:.{digits}g}"
