"""The results tables: found the same way from anywhere, shown like a paper's, written only where asked."""

import argparse
import fnmatch
import tomllib
import types
from pathlib import Path

import pytest

from lsqlab.applications import equivariance, gp_hyperparameters, scores, sparsity, tables

ROOT = Path(__file__).resolve().parent.parent
NB = "\u00a0"  # the non-breaking space between mean, ± and std
APPLICATIONS = (equivariance, sparsity, scores, gp_hyperparameters)
DEMO = tables.Table(
    "demo", ("data", "method"), ("score_error", "precision"), rows=lambda budget: [],
    columns={"data": ("data set", None), "method": ("method", None), "score_error": ("score error", "low"),
             "precision": ("precision", "high")},
    ranked_within=("data", "data set"), references=frozenset({"exact"}),
)


def summary(*rows):
    """Summary rows of the DEMO table from (data set, method, [(mean, std) of score_error, of precision], n)."""
    metrics = ("score_error", "precision")
    return [dict(data=data, method=method, n=n, **{f"{m}_{k}": v for m, pair in zip(metrics, values)
                                                    for k, v in zip(("mean", "std"), pair)})
            for data, method, values, n in rows]


def cells(text: str) -> list[list[str]]:
    """The cells of the Markdown table's header and body lines."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_paper_table_names_rounds_and_marks_the_best_per_group():
    rows = summary(("spirals", "a", [(0.000557, 5.89e-05), (0.8123, 0.0111)], 3),
                   ("spirals", "b", [(0.0238, 0.00257), (0.9, 0.02)], 3),
                   ("spirals", "exact", [(0.0, 0.0), (1.0, 0.0)], 3),  # a reference: never marked
                   ("moons", "a", [(250.4, 12.3), (float("nan"), float("nan"))], 3),
                   ("moons", "b", [(250.1, 3.0), (0.5, 0.1)], 3))
    text = tables.paper(rows, DEMO)
    table = cells(text)
    assert table[0] == ["data set", "method", "score error ↓", "precision ↑"]
    assert table[1][2:] == [f"**(5.57{NB}±{NB}0.59)×10⁻⁴**", f"0.812{NB}±{NB}0.011"]
    assert table[2][2:] == [f"0.0238{NB}±{NB}0.0026", f"**0.900{NB}±{NB}0.020**"]
    assert table[3][2:] == [f"0{NB}±{NB}0", f"1{NB}±{NB}0"]
    assert table[4][2:] == [f"**250{NB}±{NB}12**", "-"]  # 250.4 and 250.1 tie at 3 digits
    assert table[5][2:] == [f"**250{NB}±{NB}3**", f"**0.500{NB}±{NB}0.100**"]
    assert "over 3 runs" in text and "for each data set" in text and "exact: a reference" in text


def test_paper_table_of_single_runs_and_of_unequal_counts():
    one = tables.paper(summary(("x", "a", [(0.5, 0.0), (0.25, 0.0)], 1), ("x", "b", [(0.4, 0.0), (0.3, 0.0)], 1)), DEMO)
    assert cells(one)[1][2:] == ["0.500", "0.250"] and cells(one)[2][2:] == ["**0.400**", "**0.300**"]
    assert "One run per row" in one
    mixed = tables.paper(summary(("x", "a", [(1.0, 0.5), (0.2, 0.1)], 3), ("y", "a", [(2.0, 0.5), (0.3, 0.1)], 15)), DEMO)
    assert cells(mixed)[0][-1] == "runs" and [row[-1] for row in cells(mixed)[1:]] == ["3", "15"]


def test_paper_table_refuses_unnamed_columns_and_no_rows():
    with pytest.raises(ValueError, match=r"no plain-language name for column\(s\) \['acc_upright'\]"):
        tables.paper([dict(data="x", method="a", n=1, acc_upright_mean=1.0, acc_upright_std=0.0)], DEMO)
    with pytest.raises(ValueError, match="no rows"):
        tables.paper([], DEMO)


RECORDED_TABLES = [(app, name) for app in APPLICATIONS for name in app.TABLES]


@pytest.mark.parametrize("app, name", RECORDED_TABLES, ids=[name for _, name in RECORDED_TABLES])
def test_every_recorded_table_renders_with_plain_names_as_its_markdown_file(app, name):
    """Every table an application declares is recorded, names every column in plain words, and its
    recorded .md is what :func:`tables.paper` makes of its recorded summary (one renderer)."""
    table = app.TABLES[name]
    assert table.name == name and set(table.by) | set(table.metrics) <= set(table.columns)
    text = tables.paper(tables.read(name), table)
    assert tables.recorded(f"{name}.md").read_text() == text
    table = cells(text)
    assert not any("_" in column for column in table[0]), table[0]
    body = [cell for row in table[1:] for cell in row]
    assert any(cell.startswith("**") for cell in body) and not any(" ± " in cell for cell in body)


def test_write_summarises_with_sample_spread_and_reads_back(tmp_path):
    runs = [dict(data="x", method=m, seed=s, score_error=e, precision=0.5) for m, s, e in
            [("a", 0, 1.0), ("a", 1, 3.0), ("b", 0, 2.0)]]
    summary = tables.write(runs, DEMO, directory=tmp_path)
    assert summary[0] == dict(data="x", method="a", n=2, score_error_mean=2.0, score_error_std=pytest.approx(2**0.5),
                              precision_mean=0.5, precision_std=0.0)
    assert tables.read("demo", directory=tmp_path)[1]["score_error_mean"] == 2.0
    assert (tmp_path / "demo_runs.csv").read_text().count("\n") == 4
    assert (tmp_path / "demo.md").read_text() == tables.paper(summary, DEMO)


def test_recorded_tables_are_found_next_to_the_module_and_shipped_as_package_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory plays no part
    assert tables.recorded("gp.csv") == ROOT / "lsqlab" / "applications" / "results" / "gp.csv"
    assert tables.read("gp")[0]["dataset"] == "co2"
    with pytest.raises(FileNotFoundError, match=r"no recorded results file 'nope.csv' in .*results; recorded files"):
        tables.recorded("nope.csv")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = patterns["lsqlab.applications"]
    assert all(any(fnmatch.fnmatch(f"results/{path.name}", p) for p in shipped) for path in tables.RECORDED.iterdir())


def parse(*argv: str, smoke: bool = False, partial: str | None = None) -> Path:
    parser = argparse.ArgumentParser()
    tables.add_output_options(parser, str(ROOT / "benchmarks" / "app_x.py"))
    return tables.output_directory(parser, parser.parse_args(list(argv)), smoke, partial)


def test_results_commands_write_to_the_scratch_folder_unless_asked_to_record(tmp_path, capsys):
    scratch = ROOT / "artifacts" / "results"
    assert parse() == scratch and parse(smoke=True) == scratch / "smoke"
    assert parse("--out", str(tmp_path), smoke=True) == tmp_path
    assert parse("--record") == tables.RECORDED
    for argv, smoke, partial, message in (
        (("--record",), True, None, "refused on a smoke budget"),
        (("--record",), False, "--seeds 0", "refused for --seeds 0"),
        (("--record", "--out", str(tmp_path)), False, None, "drop --out"),
        (("--out", str(tables.RECORDED)), False, None, "pass --record"),
    ):
        with pytest.raises(SystemExit):
            parse(*argv, smoke=smoke, partial=partial)
        assert message in capsys.readouterr().err


def test_main_runs_the_chosen_table_on_the_budget_asked_for(tmp_path, capsys, monkeypatch):
    """The command behind benchmarks/app_*.py, on a stand-in application: --table picks the table,
    --smoke the application's SMOKE budget, --out the folder."""
    app = types.ModuleType("demo_app", "A stand-in application.")
    app.Budget = lambda: "full"
    app.SMOKE = "smoke"

    def rows(budget):
        return [dict(data="x", method="a", seed=0, score_error=1.0 if budget == "full" else 2.0, precision=0.5)]

    app.TABLES = {"demo": DEMO._replace(rows=rows), "other": DEMO._replace(name="other", rows=rows)}
    monkeypatch.setattr(tables, "SMOKE", False)  # as without LSQLAB_SMOKE / CI in the environment
    summary = tables.main(app, str(ROOT / "benchmarks" / "app_demo.py"), ["--smoke", "--out", str(tmp_path)])
    assert summary[0]["score_error_mean"] == 2.0 and (tmp_path / "demo.md").exists()
    assert f"demo written to {tmp_path}" in capsys.readouterr().out
    tables.main(app, str(ROOT / "benchmarks" / "app_demo.py"), ["--table", "other", "--out", str(tmp_path)])
    assert tables.read("other", directory=tmp_path)[0]["score_error_mean"] == 1.0
