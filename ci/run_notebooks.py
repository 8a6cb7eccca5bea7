#!/usr/bin/env python
"""Execute the curated notebooks headlessly with papermill and export their figures.

    python ci/run_notebooks.py --smoke --out /tmp/nb        # what the tests do (SMOKE=True)
    python ci/run_notebooks.py --out results                # `make reproduce` (quick default settings)
    python ci/run_notebooks.py --full --out results         # `make reproduce FULL=1` (paper scale)

Every notebook runs even when an earlier one fails; all failures are reported at the end and the exit
status is non-zero if any notebook failed. Executed copies go to OUT/notebooks/, and every plotly
figure they display is written as a standalone HTML page under OUT/figures/<notebook>/ (plotly.js is
written once beside them, so the pages open offline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


@dataclass
class NotebookRun:
    name: str
    seconds: float
    error: str | None
    figures: list[Path]


def notebook_paths(folder: Path = NOTEBOOKS, only: str | None = None) -> list[Path]:
    paths = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if only:
        paths = [p for p in paths if only in p.name]
    return paths


def parameters_for(mode: str, extra: dict[str, object]) -> dict[str, object]:
    """SMOKE is True only in test mode; FULL switches notebooks to paper-scale settings."""
    params: dict[str, object] = {"SMOKE": mode == "smoke"}
    if mode == "full":
        params["FULL"] = True
    params.update(extra)
    return params


def run_notebook(path: Path, out_dir: Path, parameters: dict[str, object], timeout: int | None = None) -> NotebookRun:
    import papermill as pm

    out_nb = out_dir / "notebooks" / path.name
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(
            str(path),
            str(out_nb),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            execution_timeout=timeout,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError carrying the cell's traceback
        error = _short_error(exc)
    seconds = time.perf_counter() - start
    figures = export_figures(out_nb, out_dir / "figures" / path.stem) if out_nb.exists() else []
    return NotebookRun(path.name, seconds, error, figures)


def _short_error(exc: Exception) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None)
    where = f" (cell {cell})" if cell is not None else ""
    text = f"{name}: {value}{where}"
    if not hasattr(exc, "ename"):
        text += "\n" + "".join(traceback.format_exception_only(type(exc), exc))
    return text


def export_figures(executed_nb: Path, fig_dir: Path) -> list[Path]:
    """Write each plotly figure shown in an executed notebook as a standalone HTML page."""
    import plotly.io as pio

    nb = json.loads(executed_nb.read_text())
    figures = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            spec = output.get("data", {}).get(PLOTLY_MIME)
            if spec is None:
                continue
            fig_dir.mkdir(parents=True, exist_ok=True)
            target = fig_dir / f"figure_{len(figures) + 1:02d}.html"
            pio.from_json(json.dumps(spec)).write_html(str(target), include_plotlyjs="directory")
            figures.append(target)
    return figures


def run_all(paths: list[Path], out_dir: Path, parameters: dict[str, object], timeout: int | None = None) -> list[NotebookRun]:
    runs = []
    for path in paths:
        print(f"--> {path.name} {parameters}", flush=True)
        run = run_notebook(path, out_dir, parameters, timeout)
        status = "ok" if run.error is None else "FAILED"
        print(f"    {status} in {run.seconds:.1f} s, {len(run.figures)} figure(s)", flush=True)
        runs.append(run)
    return runs


def summarise(runs: list[NotebookRun], out_dir: Path) -> int:
    failed = [r for r in runs if r.error is not None]
    print(f"\nExecuted notebooks: {out_dir / 'notebooks'}")
    print(f"Figures (standalone HTML): {out_dir / 'figures'}")
    for r in runs:
        print(f"  {r.name:40s} {'ok' if r.error is None else 'FAILED':6s} {r.seconds:7.1f} s  {len(r.figures)} figures")
    if failed:
        print(f"\n{len(failed)} of {len(runs)} notebook(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"- {r.name}: {r.error}", file=sys.stderr)
        return 1
    print(f"\nAll {len(runs)} notebook(s) ran.")
    return 0


def parse_param(text: str) -> tuple[str, object]:
    key, _, raw = text.partition("=")
    if not key or not _:
        raise argparse.ArgumentTypeError(f"parameters are KEY=VALUE (JSON value), got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="run with SMOKE=True (tiny sizes, same code path)")
    mode.add_argument("--full", action="store_true", help="paper-scale settings (FULL=True); hours on CPU")
    ap.add_argument("--out", type=Path, default=REPO / "results", help="output folder (default: results/)")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of notebooks to run")
    ap.add_argument("--only", help="run only notebooks whose file name contains this text")
    ap.add_argument("-p", "--param", action="append", type=parse_param, default=[], help="extra KEY=VALUE parameter")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    args = ap.parse_args(argv)

    paths = notebook_paths(args.notebooks, args.only)
    if not paths:
        print(f"no notebooks found in {args.notebooks}" + (f" matching {args.only!r}" if args.only else ""), file=sys.stderr)
        return 1
    run_mode = "smoke" if args.smoke else "full" if args.full else "quick"
    runs = run_all(paths, args.out.resolve(), parameters_for(run_mode, dict(args.param)), args.timeout)
    return summarise(runs, args.out.resolve())


if __name__ == "__main__":
    sys.exit(main())
