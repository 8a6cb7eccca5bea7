#!/usr/bin/env python
"""Check that committed notebooks are clean: no outputs, a `parameters` cell defining SMOKE and SEED.

    python ci/check_notebooks.py            # check notebooks/, exit 1 listing every problem
    python ci/check_notebooks.py --strip    # strip outputs and execution counts in place, then check
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
REQUIRED_PARAMETERS = ("SMOKE", "SEED")


def parameter_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def papermill_parameter_names(cell) -> set[str]:
    """The names papermill's own inspector finds (what `papermill --help-notebook` lists); it parses each line
    with a regex and skips, with a warning, lines it cannot read."""
    import contextlib
    import io
    import logging

    from papermill.translators import PythonTranslator

    logging.getLogger("papermill").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return {p.name for p in PythonTranslator.inspect(cell)}


def problems_of(path: Path) -> list[str]:
    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # malformed JSON or schema violation
        return [f"not a valid notebook: {exc}"]
    problems = []
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"needs exactly one cell tagged 'parameters', found {len(tagged)}")
    else:
        missing = [p for p in REQUIRED_PARAMETERS if p not in parameter_names(tagged[0].source)]
        if missing:
            problems.append(f"parameters cell does not define {', '.join(missing)}")
        unread = sorted(parameter_names(tagged[0].source) - papermill_parameter_names(tagged[0]))
        if unread:
            problems.append(f"papermill cannot read parameter(s) {', '.join(unread)} (its inspector skips the line; "
                            "keep '=' out of the line's comment)")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            problems.append(f"cell {i} has outputs or an execution count (run with --strip)")
    if not any(c.cell_type == "markdown" for c in nb.cells):
        problems.append("has no markdown cell: a notebook must tell its story")
    return problems


def strip(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nbformat.write(nb, str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    ap.add_argument("--strip", action="store_true", help="strip outputs in place before checking")
    args = ap.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks found in {NOTEBOOKS}", file=sys.stderr)
        return 1
    failed = 0
    for path in paths:
        if args.strip:
            strip(path)
        problems = problems_of(path)
        failed += bool(problems)
        for problem in problems:
            print(f"{path.name}: {problem}", file=sys.stderr)
    print(f"checked {len(paths)} notebook(s), {failed} with problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
