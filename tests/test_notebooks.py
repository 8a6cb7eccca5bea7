"""Every curated notebook runs headlessly with SMOKE=True, and the notebook tooling reports problems."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


run_notebooks = _load("run_notebooks")
check_notebooks = _load("check_notebooks")
CURATED = run_notebooks.notebook_paths()


def _notebook(path: Path, cells: list, tag_parameters: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# test notebook"))
    params = nbformat.v4.new_code_cell("SMOKE = False\nSEED = 0")
    if tag_parameters:
        params.metadata["tags"] = ["parameters"]
    nb.cells.append(params)
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in cells)
    nbformat.write(nb, str(path))
    return path


def test_curated_notebooks_exist_and_are_clean():
    assert len(CURATED) >= 2, "expected the curated notebooks in notebooks/"
    assert check_notebooks.main([]) == 0


@pytest.mark.notebooks
@pytest.mark.parametrize("path", CURATED, ids=[p.stem for p in CURATED])
def test_notebook_runs_in_smoke_mode(path, tmp_path):
    run = run_notebooks.run_notebook(path, tmp_path, {"SMOKE": True})
    assert run.error is None, run.error
    assert run.figures, f"{path.name} displayed no plotly figure"
    assert all(f.stat().st_size > 0 for f in run.figures)


def test_runner_reports_every_failure(tmp_path, capsys):
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "a_bad.ipynb", ["raise ValueError('first broken')"])
    _notebook(folder / "b_good.ipynb", ["import plotly.graph_objects as go\ngo.Figure(go.Scatter(y=[1, 2])).show()"])
    _notebook(folder / "c_bad.ipynb", ["assert SMOKE is False, 'second broken'"])
    status = run_notebooks.main(["--smoke", "--notebooks", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 1
    assert "first broken" in err and "second broken" in err and "2 of 3" in err
    assert (tmp_path / "out" / "notebooks" / "b_good.ipynb").exists()
    assert list((tmp_path / "out" / "figures" / "b_good").glob("figure_*.html"))


def test_runner_fails_on_empty_folder(tmp_path):
    assert run_notebooks.main(["--notebooks", str(tmp_path), "--out", str(tmp_path / "o")]) == 1


def test_checker_flags_outputs_and_missing_parameters(tmp_path, capsys):
    no_tag = _notebook(tmp_path / "no_tag.ipynb", ["1 + 1"], tag_parameters=False)
    with_output = _notebook(tmp_path / "out.ipynb", ["1 + 1"])
    nb = nbformat.read(str(with_output), as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nb.cells[-1].execution_count = 1
    nbformat.write(nb, str(with_output))
    assert check_notebooks.main([str(no_tag), str(with_output)]) == 1
    err = capsys.readouterr().err
    assert "parameters" in err and "outputs" in err
    assert check_notebooks.main(["--strip", str(with_output)]) == 0


def test_checker_flags_parameters_papermill_cannot_read(tmp_path, capsys):
    bad = _notebook(tmp_path / "bad.ipynb", ["1 + 1"])
    nb = nbformat.read(str(bad), as_version=4)
    nb.cells[1].source += '\nNETS = "runs/{n}"  # rows (n = objects)\nOK = 3  # fine'
    nbformat.write(nb, str(bad))
    assert check_notebooks.main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "papermill cannot read parameter(s) NETS " in err and "OK" not in err.split("cannot read")[1]


def test_checker_rejects_malformed_json(tmp_path, capsys):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    assert check_notebooks.main([str(broken)]) == 1
    assert "not a valid notebook" in capsys.readouterr().err
