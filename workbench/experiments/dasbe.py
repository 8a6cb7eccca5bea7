"""DASBE's evaluation protocols (spec §6): Table I and the Fig 3 synchrony curves, as JSON-ready data.

* ``evaluate``: one (dataset file, method) cell. The first ``images`` images of a split are read in chunks
  (memory stays bounded for 6000 images), every chunk runs all seeds at once as extra batch rows, and the
  readout (k-means on the last 10 iterations, smooth 2, oracle K, n_init 10) is scored by AMI over labelled
  pixels. Table value = mean over the seed-means, +- std (ddof = 0) of the seed-means (spec §6.1 item 4).
* ``table1`` / ``table1_markdown``: all cells of Table I next to the paper's numbers.
* ``synchrony_protocol``: per-iteration synchrony, rate and clustering scores for Fig 3 (spec §6.2).

Numbers from the paper and from running the authors' code are kept here as named constants
(``PAPER_TABLE1``, ``AUTHORS_CODE_200``) for side-by-side display only; they are never results.

Methods: ``"dasbe"`` (the binding loop, ``run_binding``), ``"pure_ann"`` (the same delay loop without spikes,
``baselines.run_pure_ann``) and ``"pcnn"`` (the pure-SNN column, ``baselines.run_pcnn``).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from workbench.binding.dasbe import DasbeParams, run_binding
from workbench.binding.readout import DEFAULT_BACK_CYCLES, group_pixels, scores_per_cycle
from workbench.data.store import read_split, split_size
from workbench.metrics import ami_batch, ari
from workbench.runtime import resolve_device

__all__ = [
    "PRESETS", "METHODS", "TABLE1_SEEDS", "TABLE1_IMAGES", "ORACLE_K", "PAPER_TABLE1", "AUTHORS_CODE_200",
    "AUTHORS_CODE_SYNCHRONY", "evaluate", "table1", "table1_markdown", "synchrony_protocol", "fig3_image_indices",
    "dasbe_params", "run_checkpoint",
]

PRESETS = ("bars", "corners", "shapes", "multi_mnist", "mnist_shape")
METHODS = ("dasbe", "pure_ann", "pcnn")
METHOD_TITLES = {"dasbe": "DASBE", "pure_ann": "pure-ANN", "pcnn": "pure-SNN (PCNN)"}
DATASET_TITLES = {"bars": "Bars", "corners": "Corners", "shapes": "Shapes", "multi_mnist": "Multi-MNIST",
                  "mnist_shape": "MNIST+Shape"}

# --- protocol constants (spec §6.1, §3, §2.4) --------------------------------------------------------
TABLE1_SEEDS = (111, 222, 333, 444, 555)  # one run of every image per seed
TABLE1_IMAGES = 6000  # train_multi[0:6000]
TABLE1_SPLIT = "train_multi"
SMOOTH = 2  # readout feature s(t) + 0.5 s(t-1)
N_INIT = 10  # k-means restarts (the authors' sklearn <= 0.24 default)
PCNN_STEPS = 500  # PCNN run length
PCNN_BACK_STEPS = 100  # PCNN readout window: the last 100 steps
ORACLE_K = {"bars": 13, "corners": 6, "shapes": 4, "multi_mnist": 4, "mnist_shape": 3}  # §2.4, max label + 1
AUTO_K_EXTRA = 3  # k="auto" tries K = 2 .. ORACLE_K[preset] + AUTO_K_EXTRA unless k_max is given

# --- Fig 3 protocol (spec §6.2) -------------------------------------------------------------------------
FIG3_SEED = 111
FIG3_N_ITER = 30
FIG3_Q = 1 / 6
FIG3_N_IMAGES = 100
FIG3_IMAGE_RANGE = 6000

# --- published numbers: for display next to ours, NEVER used as results ------------------------------
# Paper, Table I (AMI x 100, mean +- std over 5 seed-means), spec §7.1.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "bars": {"dasbe": (96.5, 0.03), "pure_ann": (9.6, 0.04), "pcnn": (9.3, 0.04)},
    "shapes": {"dasbe": (90.2, 0.07), "pure_ann": (47.5, 0.04), "pcnn": (44.7, 0.15)},
    "corners": {"dasbe": (80.6, 0.08), "pure_ann": (54.2, 0.15), "pcnn": (28.5, 0.08)},
    "multi_mnist": {"dasbe": (55.5, 0.06), "pure_ann": (43.0, 0.08), "pcnn": (23.0, 0.11)},
    "mnist_shape": {"dasbe": (53.3, 0.26), "pure_ann": (38.3, 0.03), "pcnn": (12.9, 0.08)},
}
# The authors' published code and Bars/Corners weights, train_multi[0:200], seed 111 (AMI x 100, +- SE over
# images), spec §7.2. The paper's pure-ANN column is NOT reproduced by their code (flagged "unverified").
AUTHORS_CODE_200: dict[str, dict[str, tuple[float, float]]] = {
    "bars": {"dasbe": (96.4, 0.3), "pure_ann": (46.1, 1.3), "pcnn": (9.0, 0.3)},
    "corners": {"dasbe": (79.4, 0.7), "pure_ann": (62.2, 0.3), "pcnn": (28.2, 0.5)},
}
# Authors' code, synchrony protocol (first 20 images, seed 111, N_iter 30), spec §7.2: iteration -> mean.
AUTHORS_CODE_SYNCHRONY: dict[str, dict[str, dict[int, float]]] = {
    "bars": {
        "synchrony": {0: 0.052, 1: 0.156, 2: 0.394, 3: 0.628, 4: 0.795, 5: 0.865, 9: 0.929, 14: 0.947, 19: 0.944,
                      29: 0.952},
        "rate": {0: -0.382, 1: -0.275, 2: -0.280, 3: -0.206, 4: -0.102, 5: -0.036, 9: 0.065, 14: 0.110, 19: 0.123,
                 29: 0.132},
        "clustering": {0: 0.312, 1: 0.291, 2: 0.465, 3: 0.651, 4: 0.802, 5: 0.867, 9: 0.925, 14: 0.941, 19: 0.941,
                       29: 0.949},
    },
    "corners": {
        "synchrony": {0: 0.120, 1: 0.193, 2: 0.300, 3: 0.425, 4: 0.527, 5: 0.570, 9: 0.708, 14: 0.738, 19: 0.758,
                      29: 0.787},
        "rate": {0: -0.271, 1: -0.135, 2: -0.198, 3: -0.109, 4: -0.087, 5: -0.050, 9: -0.007, 14: 0.002,
                 19: -0.043, 29: 0.047},
        "clustering": {0: 0.329, 1: 0.288, 2: 0.382, 3: 0.496, 4: 0.578, 5: 0.588, 9: 0.710, 14: 0.742, 19: 0.775,
                       29: 0.766},
    },
}


def dasbe_params(preset: str, **overrides: Any) -> DasbeParams:
    """The Table I loop constants of ``preset`` (spec §2.4), with optional overrides (e.g. ``n_iter=30``)."""
    _check_choice("preset", preset, PRESETS)
    return getattr(DasbeParams, preset)(**overrides)


def fig3_image_indices(n: int = FIG3_N_IMAGES, seed: int = FIG3_SEED, high: int = FIG3_IMAGE_RANGE) -> list[int]:
    """Fig 3's images: ``RandomState(111).randint(0, 6000, 100)`` into train_multi (all draws kept)."""
    return np.random.RandomState(seed).randint(0, high, n).tolist()


# --- one Table I cell -----------------------------------------------------------------------------------


def evaluate(data_file: str | os.PathLike, *, split: str = TABLE1_SPLIT, preset: str, images: int,
             seeds: Sequence[int] = TABLE1_SEEDS, dae: nn.Module | str | os.PathLike | None = None,
             method: str = "dasbe", batch_size: int = 64, device: str | torch.device = "cpu",
             progress: bool = True, start: int = 0, params: DasbeParams | None = None,
             k: str | int = "oracle", k_max: int | None = None, include_background: bool = False,
             n_init: int = N_INIT, smooth: int = SMOOTH, normalise_init: bool = False,
             pcnn_params: Any = None, per_image: bool = True) -> dict[str, Any]:
    """Score ``method`` on images ``start:start+images`` of ``split`` under every seed; returns a JSON-ready dict.

    Args:
        data_file: HDF5 file in the papers' layout (ours or the authors').
        preset: dataset preset: loop constants (D, r), the default DAE and the PCNN constants.
        images: number of images (from ``start``).
        seeds: binding seeds; each seed runs every image (batched as extra rows) and gives one seed-mean.
        dae: a module, a checkpoint path (ours, or the authors' plain one-hidden-layer state dict), or
            None for the preset's shipped checkpoint. Unused by ``"pcnn"``.
        method: ``"dasbe"``, ``"pure_ann"`` or ``"pcnn"``.
        batch_size: images per chunk (each chunk runs ``len(seeds) * batch_size`` rows); the numbers do not
            depend on it.
        params: loop constants (default: the preset's, N_iter = 50).
        k: k-means K: ``"oracle"`` (max label + 1, the paper's), an int, or ``"auto"`` (best silhouette for
            K in 2..k_max; k_max defaults to ``ORACLE_K[preset] + 3``).
        include_background: AMI over all pixels instead of labelled ones (cross-paper comparisons).
        normalise_init: pure-ANN only: normalise the delay-line init per pixel as DASBE does.
        pcnn_params: PCNN only: ``PCNNParams`` (default: the preset's).
        per_image: include the per-image AMI lists.

    The result holds ``ami_mean`` (fraction, the mean of the seed-means), ``ami_std_over_seeds`` (ddof=0),
    the same x100 as ``ami_mean_x100`` / ``ami_std_over_seeds_x100``, ``per_seed_mean`` (``{"111": ...}``),
    ``per_image_ami`` (``[seed][image]``), ARI on labelled pixels and on all pixels, ``n_nan`` (images with
    no pixel to score; left out of the means), the data's SHA-256 (first 16 hex digits of the C-contiguous
    uint8 images / labels, spec §11), timing and every setting.
    """
    _check_choice("preset", preset, PRESETS)
    _check_choice("method", method, METHODS)
    seeds = _check_seeds(seeds)
    _check_positive("images", images)
    _check_positive("batch_size", batch_size)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be an int >= 0 (the first image), got {start!r}")
    if k != "oracle" and k != "auto" and not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 2):
        raise ValueError(f"k must be 'oracle', 'auto' or an int >= 2, got {k!r}")
    path = check_data(data_file, split, int(start) + int(images), preset)
    params = params or dasbe_params(preset)
    dev = resolve_device(device)
    module, dae_source = (None, None) if method == "pcnn" else resolve_dae(dae, preset, data_file=path)
    _check_stateless(module, method)
    if method == "pcnn":
        pcnn_params = pcnn_params or _pcnn_preset(preset)
    if k == "auto" and k_max is None:
        k_max = ORACLE_K[preset] + AUTO_K_EXTRA

    S, n = len(seeds), int(images)
    amis = np.full((S, n), np.nan)
    aris = np.full((S, n), np.nan)
    aris_bg = np.full((S, n), np.nan)
    hashes = {"images": hashlib.sha256(), "labels": hashlib.sha256()}
    clock = time.perf_counter()
    bar = _progress(n, progress, f"{preset} {method}")
    for lo in range(0, n, int(batch_size)):
        hi = min(n, lo + int(batch_size))
        x, labels = read_split(path, split, start=start + lo, stop=start + hi)
        _update_hashes(hashes, x, labels)
        flat_labels = labels.reshape(len(labels), -1)
        rows_labels = np.tile(flat_labels, (S, 1))  # seed-major rows, as run_binding orders them
        ids = np.arange(start + lo, start + hi)
        pred = _run_and_group(method, module, x, flat_labels, ids, seeds, params, dev, k=k, k_max=k_max,
                              n_init=n_init, smooth=smooth, normalise_init=normalise_init, pcnn_params=pcnn_params)
        ignore = None if include_background else 0
        amis[:, lo:hi] = ami_batch(rows_labels, pred, ignore_label=ignore).reshape(S, hi - lo)
        aris[:, lo:hi] = _ari_rows(rows_labels, pred, False).reshape(S, hi - lo)
        aris_bg[:, lo:hi] = _ari_rows(rows_labels, pred, True).reshape(S, hi - lo)
        bar.update(hi - lo)
    bar.close()
    seconds = time.perf_counter() - clock

    seed_means = _nanmean_rows(amis)
    result: dict[str, Any] = {
        "method": method,
        "preset": preset,
        "split": split,
        "data_file": str(path),
        "data_sha256_16": {name: h.hexdigest()[:16] for name, h in hashes.items()},
        "start": int(start),
        "images": n,
        "seeds": list(seeds),
        "dae": dae_source,
        "ami_mean": _num(np.mean(seed_means)),
        "ami_std_over_seeds": _num(np.std(seed_means, ddof=0)),
        "ami_mean_x100": _num(100 * np.mean(seed_means)),
        "ami_std_over_seeds_x100": _num(100 * np.std(seed_means, ddof=0)),
        "per_seed_mean": {str(s): _num(v) for s, v in zip(seeds, seed_means)},
        "per_seed_mean_x100": {str(s): _num(100 * v) for s, v in zip(seeds, seed_means)},
        "per_seed_sd_over_images_x100": {str(s): _num(100 * np.nanstd(a)) for s, a in zip(seeds, amis)},
        "ari_mean": _num(np.mean(_nanmean_rows(aris))),
        "ari_bg_mean": _num(np.mean(_nanmean_rows(aris_bg))),
        "per_seed_ari": {str(s): _num(v) for s, v in zip(seeds, _nanmean_rows(aris))},
        "per_seed_ari_bg": {str(s): _num(v) for s, v in zip(seeds, _nanmean_rows(aris_bg))},
        "n_nan": int(np.isnan(amis).sum()),
        "seconds": round(seconds, 3),
        "images_per_second": _num(S * n / seconds) if seconds > 0 else None,
        "device": str(dev),
        "settings": _settings(method, params, k=k, k_max=k_max, include_background=include_background,
                              n_init=n_init, smooth=smooth, normalise_init=normalise_init,
                              pcnn_params=pcnn_params, batch_size=batch_size),
    }
    if per_image:
        result["per_image_ami"] = [[_num(v) for v in row] for row in amis]
    return result


def _run_and_group(method: str, dae: nn.Module | None, x: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                   seeds: list[int], params: DasbeParams, device: torch.device, *, k: Any, k_max: int | None,
                   n_init: int, smooth: int, normalise_init: bool, pcnn_params: Any) -> np.ndarray:
    """Predicted groups ``[S * B, N]`` (seed-major rows) of one chunk under every seed."""
    B = len(x)
    image_shape = (int(x.shape[1]), int(x.shape[2]))
    flat = x.reshape(B, -1)
    oracle = np.tile(labels.max(axis=1) + 1, len(seeds))
    n_clusters = oracle if k == "oracle" else k
    row_seeds = np.repeat(seeds, B)
    row_ids = np.tile(ids, len(seeds))
    group: Callable[..., torch.Tensor] = lambda source, back: group_pixels(  # noqa: E731
        source, n_clusters, back_steps=back, smooth=smooth, n_init=n_init, seed=row_seeds, image_ids=row_ids,
        k_max=k_max)
    if method == "dasbe":
        record = run_binding(dae, flat, params, seed=seeds, image_ids=ids, record=f"last:{DEFAULT_BACK_CYCLES}",
                             device=device, image_shape=image_shape)
        pred = group(record, DEFAULT_BACK_CYCLES * params.delay)
    elif method == "pure_ann":
        from workbench.binding.baselines import run_pure_ann

        signal = run_pure_ann(dae, flat, params, seed=seeds, image_ids=ids, back=DEFAULT_BACK_CYCLES,
                              normalise_init=normalise_init, device=device)
        pred = group(signal, DEFAULT_BACK_CYCLES * params.delay)
    else:
        from workbench.binding.baselines import run_pcnn

        record = run_pcnn(flat, image_shape, pcnn_params, T=PCNN_STEPS, seed=seeds, image_ids=ids,
                          back_steps=PCNN_BACK_STEPS, device=device)
        pred = group(record, PCNN_BACK_STEPS)
    return pred.cpu().numpy()


def _ari_rows(labels: np.ndarray, pred: np.ndarray, include_background: bool) -> np.ndarray:
    return np.array([ari(labels[i], pred[i], include_background=include_background) for i in range(len(labels))])


# --- DAE resolution -----------------------------------------------------------------------------------


def resolve_dae(dae: nn.Module | str | os.PathLike | None, preset: str, *,
                data_file: str | os.PathLike | None = None) -> tuple[nn.Module, str]:
    """``(module, description of where it came from)`` for a module, a checkpoint path or None (shipped)."""
    if isinstance(dae, nn.Module):
        return dae, f"in-memory {type(dae).__name__}"
    from workbench.checkpoints import load_dae

    if dae is None:
        from workbench.models.presets import shipped_checkpoint

        path = shipped_checkpoint(preset)
        if path is None:
            raise FileNotFoundError(f"no trained DAE for preset {preset!r}: train one with "
                                    f"`{train_command(preset, data_file)}` and pass --dae <out>/best.pt, "
                                    "or pass --dae with the authors' weights")
        return load_dae(path), f"shipped:{path}"
    path = Path(dae)
    if not path.exists():
        raise FileNotFoundError(f"no DAE checkpoint at {path}; train one with "
                                f"`{train_command(preset, data_file)}` (it writes <out>/best.pt)")
    return load_dae(path), str(path)


def _check_stateless(module: nn.Module | None, method: str) -> None:
    """DASBE's loop carries a spiking-hidden DAE's state (bcdae, CLRNET); the pure-ANN baseline calls the DAE
    as a stateless map on real-valued input, which such a DAE does not define, so refuse that pairing."""
    if method == "pure_ann" and module is not None and hasattr(module, "initial_state"):
        raise ValueError(f"{type(module).__name__} has a spiking hidden layer with state (hidden refractoriness); "
                         "the pure-ANN baseline calls the DAE as a stateless map, so it cannot run it. Pass a "
                         "plain MLPDAE with --dae for the pure-ANN column (method 'dasbe' runs this DAE)")


def train_command(preset: str, data_file: str | os.PathLike | None = None) -> str:
    return f"hnnwb dasbe train --preset {preset} --data {data_file or f'data/{preset}.h5'}"


def make_command(name: str, path: str | os.PathLike | None = None) -> str:
    return f"hnnwb data make {name}" + (f" --out {path}" if path is not None else "")


def check_data(data_file: str | os.PathLike, split: str, needed: int, preset: str) -> Path:
    """The dataset file, after checking it exists, has ``split`` and at least ``needed`` images in it."""
    path = Path(data_file)
    size = split_size(path, split, make_hint=make_command(preset, path))
    if needed > size:
        raise ValueError(f"{path} split {split!r} has {size} images; asked for rows up to {needed}")
    return path


def _pcnn_preset(preset: str) -> Any:
    from workbench.neurons.pcnn import PCNNParams

    return PCNNParams.shapes() if preset == "shapes" else PCNNParams()


# --- Table I ----------------------------------------------------------------------------------------


def table1(datasets: Sequence[str] = PRESETS, *, images: int = TABLE1_IMAGES, seeds: Sequence[int] = TABLE1_SEEDS,
           methods: Sequence[str] = METHODS, data_dir: str | os.PathLike = Path("data"),
           dae_overrides: Mapping[str, str | os.PathLike | nn.Module] | None = None, split: str = TABLE1_SPLIT,
           batch_size: int = 64, device: str | torch.device = "cpu", progress: bool = True,
           per_image: bool = False) -> dict[str, Any]:
    """Every (dataset, method) cell of Table I, with the paper's and the authors'-code numbers beside them.

    A cell whose data file or DAE is missing holds ``{"missing": "<command that makes it>"}``; a cell whose
    run fails holds ``{"error": "<message>"}``; the other cells hold ``evaluate``'s result (per-image lists
    only with ``per_image``). Data files are ``data_dir/<name>.h5``; ``dae_overrides`` maps a dataset to a
    checkpoint (else its shipped DAE, else ``runs/<name>/best.pt`` when present: Multi-MNIST's bcdae).
    """
    for name in datasets:
        _check_choice("dataset", name, PRESETS)
    for method in methods:
        _check_choice("method", method, METHODS)
    seeds = _check_seeds(seeds)
    overrides = dict(dae_overrides or {})
    clock = time.perf_counter()
    cells: dict[str, dict[str, Any]] = {}
    for name in datasets:
        cells[name] = {}
        path = _dataset_path(name, Path(data_dir))
        dae = _default_dae(name, overrides.get(name))
        for method in methods:
            missing = _missing(name, method, path, dae)
            if missing:
                cells[name][method] = {"missing": missing}
                continue
            try:
                cells[name][method] = evaluate(path, split=split, preset=name, images=images, seeds=seeds,
                                               dae=dae, method=method, batch_size=batch_size,
                                               device=device, progress=progress, per_image=per_image)
            except (FileNotFoundError, ImportError) as exc:
                cells[name][method] = {"missing": str(exc)}
            except (ValueError, RuntimeError) as exc:
                cells[name][method] = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "table": "DASBE Table I (AMI x 100 over labelled pixels; mean +- std (ddof=0) of the seed-means)",
        "split": split, "images": int(images), "seeds": list(seeds), "datasets": list(datasets),
        "methods": list(methods), "cells": cells,
        "paper_table1_published": {d: {m: list(v) for m, v in row.items()} for d, row in PAPER_TABLE1.items()},
        "authors_code_200_published": {d: {m: list(v) for m, v in row.items()} for d, row in AUTHORS_CODE_200.items()},
        "note": ("paper_* and authors_code_* are published numbers for comparison, not results of this run. "
                 "The paper's pure-ANN column is unverified: the authors' code gives 46.1 (Bars) and 62.2 "
                 "(Corners) on train_multi[0:200]."),
        "seconds": round(time.perf_counter() - clock, 3),
    }


def run_checkpoint(name: str, runs_dir: str | os.PathLike = Path("runs")) -> Path | None:
    """``runs/<name>/best.pt`` (what ``python -m workbench.models.presets`` writes), else
    ``results/dae/<name>/best.pt`` (``hnnwb dasbe train``'s default), when present, else None. Table I uses it for a dataset without a shipped DAE, e.g. Multi-MNIST's bcdae."""
    for path in (Path(runs_dir) / name / "best.pt", Path("results") / "dae" / name / "best.pt"):
        if path.is_file():
            return path
    return None


def _default_dae(name: str, override: Any) -> Any:
    """The DAE of a Table I row: the override, else the shipped checkpoint, else ``runs/<name>/best.pt``."""
    if override is not None:
        return override
    from workbench.models.presets import shipped_checkpoint

    return None if shipped_checkpoint(name) is not None else run_checkpoint(name)


def _dataset_path(name: str, data_dir: Path) -> Path:
    from workbench.data.datasets import dataset_path

    return Path(dataset_path(name, data_dir))


def _missing(name: str, method: str, path: Path, dae: Any) -> str | None:
    if not path.exists():
        return f"missing: {make_command(name, path)}"
    if method == "pcnn" or isinstance(dae, nn.Module):
        return None
    if dae is not None:
        return None if Path(dae).exists() else f"missing: {dae} ({train_command(name, path)})"
    from workbench.models.presets import shipped_checkpoint

    if shipped_checkpoint(name) is None:
        return f"missing: a trained DAE ({train_command(name, path)}, then --dae {name}=<out>/best.pt)"
    return None


def table1_markdown(result: Mapping[str, Any]) -> str:
    """Table I as Markdown: ours (mean +- std over seeds, x100) next to the paper's published numbers."""
    methods = list(result["methods"])
    head = ["Dataset"]
    for m in methods:
        head += [f"{METHOD_TITLES[m]} (ours)", f"{METHOD_TITLES[m]} (paper)"]
    lines = [f"Table I: AMI x 100 on {result['split']}[0:{result['images']}], seeds "
             f"{', '.join(map(str, result['seeds']))}; ours = mean +- std (ddof=0) of the seed-means.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in result["datasets"]:
        row = [DATASET_TITLES.get(name, name)]
        for m in methods:
            row.append(_cell_text(result["cells"].get(name, {}).get(m, {})))
            paper = PAPER_TABLE1.get(name, {}).get(m)
            flag = " (unverified)" if m == "pure_ann" and paper else ""
            row.append(f"{paper[0]:.1f} +- {paper[1]:.2f}{flag}" if paper else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "The authors' published code and weights on train_multi[0:200], seed 111 (mean +- SE over "
              "images; published numbers, not results of this run):", "",
              "| Dataset | " + " | ".join(METHOD_TITLES[m] for m in METHODS) + " |", "|---|---|---|---|"]
    for name, row in AUTHORS_CODE_200.items():
        lines.append(f"| {DATASET_TITLES[name]} | " + " | ".join(f"{row[m][0]:.1f} +- {row[m][1]:.1f}"
                                                                 for m in METHODS) + " |")
    lines += ["", "Pure-ANN: the paper's column is unverified; the authors' code does not reproduce it (spec §7.2).",
              ""]
    return "\n".join(lines)


def _cell_text(cell: Mapping[str, Any]) -> str:
    if "missing" in cell:
        return cell["missing"] if str(cell["missing"]).startswith("missing") else f"missing: {cell['missing']}"
    if "error" in cell:
        return f"error: {cell['error']}"
    if cell.get("ami_mean_x100") is None:
        return "-"
    return f"{cell['ami_mean_x100']:.1f} +- {cell['ami_std_over_seeds_x100']:.2f}"


# --- Fig 3: synchrony, rate and clustering scores per iteration ------------------------------------


def synchrony_protocol(data_file: str | os.PathLike, *, preset: str, images: int | Sequence[int] | None = None,
                       seed: int = FIG3_SEED, n_iter: int = FIG3_N_ITER, q: float = FIG3_Q,
                       dae: nn.Module | str | os.PathLike | None = None, split: str = TABLE1_SPLIT,
                       batch_size: int = 20, device: str | torch.device = "cpu", progress: bool = True,
                       smooth: int = SMOOTH, n_init: int = N_INIT, per_image: bool = True) -> dict[str, Any]:
    """Fig 3's curves: per iteration, the synchrony (VP_q silhouette), rate (VP_0) and clustering (Euclidean)
    scores and the AMI of k-means on that iteration's own D steps, over labelled pixels.

    ``images``: None = Fig 3's ``fig3_image_indices()`` (all 100 draws, none dropped), an int n = the first
    n images, or explicit indices. Means over images skip NaN (undefined silhouettes: fewer than 2
    predicted groups among labelled pixels); ``n_nan`` counts them. ``ci95`` = 1.96 x SE over images.
    ``final`` is the back = 1 readout: the scores of the last iteration's block (our k-means is
    deterministic given (seed, image), so it equals the last iteration's entry). ``correlation`` is the
    Pearson correlation over all (image, iteration) points of the clustering score with syn and with rate
    (Fig 3c/d).
    """
    _check_choice("preset", preset, PRESETS)
    if images is None:
        indices = fig3_image_indices()
    elif isinstance(images, (int, np.integer)):
        _check_positive("images", images)
        indices = list(range(int(images)))
    else:
        indices = [int(i) for i in images]
    if not indices:
        raise ValueError("images must select at least one image")
    path = check_data(data_file, split, max(indices) + 1, preset)
    if min(indices) < 0:
        raise ValueError(f"image indices must be >= 0, got {min(indices)}")
    module, dae_source = resolve_dae(dae, preset, data_file=path)
    params = dasbe_params(preset, n_iter=n_iter)
    dev = resolve_device(device)
    names = ("ami", "synchrony", "rate", "clustering")
    scores = {name: np.full((n_iter, len(indices)), np.nan) for name in names}
    clock = time.perf_counter()
    bar = _progress(len(indices), progress, f"{preset} synchrony")
    for lo in range(0, len(indices), int(batch_size)):
        chunk = indices[lo:lo + int(batch_size)]
        x, labels = _read_rows(path, split, chunk)
        record = run_binding(module, x.reshape(len(x), -1), params, seed=seed, image_ids=np.asarray(chunk),
                             labels=labels.reshape(len(x), -1), record="all", device=dev,
                             image_shape=tuple(x.shape[1:]))
        cycle_scores = scores_per_cycle(record.to("cpu"), q=q, smooth=smooth, n_init=n_init)
        for name, values in cycle_scores.scores().items():
            scores[name][:, lo:lo + len(chunk)] = values
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - clock
    summary = {name: _mean_ci(values) for name, values in scores.items()}
    result: dict[str, Any] = {
        "preset": preset, "split": split, "data_file": str(path), "image_indices": indices, "seed": int(seed),
        "n_iter": int(n_iter), "q": float(q), "dae": dae_source,
        "iterations": list(range(n_iter)),
        "mean": {name: s["mean"] for name, s in summary.items()},
        "ci95": {name: s["ci95"] for name, s in summary.items()},
        "n_nan": {name: int(np.isnan(values).sum()) for name, values in scores.items()},
        "final": {name: summary[name]["mean"][-1] for name in names},
        "correlation": {"clustering_vs_synchrony": _pearson(scores["clustering"], scores["synchrony"]),
                        "clustering_vs_rate": _pearson(scores["clustering"], scores["rate"])},
        "seconds": round(seconds, 3),
        "settings": {"dasbe": _plain(asdict(params)), "smooth": smooth, "n_init": n_init, "k": "oracle",
                     "scored_pixels": "labelled (label != 0)", "device": str(dev)},
    }
    if per_image:
        result["per_image"] = {name: [[_num(v) for v in row] for row in values] for name, values in scores.items()}
    return result


def _read_rows(path: Path, split: str, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels at arbitrary (possibly repeated) indices, read as contiguous runs."""
    order = np.asarray(indices)
    lo, hi = int(order.min()), int(order.max()) + 1
    if hi - lo <= 4 * len(order):  # one read of the span is cheaper than many small ones
        x, labels = read_split(path, split, start=lo, stop=hi)
        return x[order - lo], labels[order - lo]
    parts = [read_split(path, split, start=int(i), stop=int(i) + 1) for i in order]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _mean_ci(values: np.ndarray) -> dict[str, list[float | None]]:
    n = np.sum(~np.isnan(values), axis=1)
    with np.errstate(all="ignore"):
        mean = np.nansum(values, axis=1) / n
        sd = np.sqrt(np.nansum((values - mean[:, None]) ** 2, axis=1) / (n - 1))
        ci = 1.96 * sd / np.sqrt(n)
    return {"mean": [_num(v) for v in mean], "ci95": [_num(v) for v in ci]}


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 3 or np.std(a[keep]) == 0 or np.std(b[keep]) == 0:
        return None
    return _num(np.corrcoef(a[keep], b[keep])[0, 1])


# --- small helpers ----------------------------------------------------------------------------------


def _settings(method: str, params: DasbeParams, *, pcnn_params: Any, **readout: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "readout": {"back_iterations": DEFAULT_BACK_CYCLES if method != "pcnn" else None,
                    "back_steps": PCNN_BACK_STEPS if method == "pcnn" else DEFAULT_BACK_CYCLES * params.delay,
                    "ami": "arithmetic normalisation",
                    "scored_pixels": "all" if readout["include_background"] else "labelled (label != 0)",
                    **{k: v for k, v in readout.items() if k not in ("normalise_init", "batch_size")}},
        "batch_size": readout["batch_size"],
    }
    if method == "pcnn":
        settings["pcnn"] = {**_params_dict(pcnn_params), "T": PCNN_STEPS}
    else:
        settings["dasbe"] = _plain(asdict(params))
    if method == "pure_ann":
        settings["normalise_init"] = bool(readout["normalise_init"])
    return settings


def _params_dict(params: Any) -> dict[str, Any]:
    try:
        return _plain(asdict(params))
    except TypeError:
        return {"repr": repr(params)}


def _plain(obj: Any) -> Any:
    """Tuples -> lists (recursively), so a result equals its own JSON round trip."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _update_hashes(hashes: dict[str, Any], images: np.ndarray, labels: np.ndarray) -> None:
    """SHA-256 of the C-contiguous uint8 arrays, fed chunk by chunk (same digest as hashing all at once)."""
    hashes["images"].update(np.ascontiguousarray(images.astype(np.uint8)).tobytes())
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    hashes["labels"].update(np.ascontiguousarray(labels.astype(dtype)).tobytes())


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    n = np.sum(~np.isnan(values), axis=1)
    with np.errstate(all="ignore"):
        return np.where(n > 0, np.nansum(values, axis=1) / np.maximum(n, 1), np.nan)


def _num(value: Any) -> float | None:
    """A JSON-safe float: NaN / inf become None."""
    v = float(value)
    return v if math.isfinite(v) else None


def _check_choice(what: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def _check_positive(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be an int >= 1, got {value!r}")


def _check_seeds(seeds: Any) -> list[int]:
    seeds = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (each gives one seed-mean), got {seeds!r}")
    return [int(s) for s in seeds]


def _progress(total: int, enabled: bool, desc: str):
    import sys

    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, desc=desc, unit="img", disable=not (enabled and interactive), leave=False)


def tiny_sizes(name: str, n_multi: int) -> dict[str, int]:
    """Split sizes for a quick file: ``n_multi`` train_multi images and every other split empty."""
    from workbench.data.datasets import dataset_info

    return {split: (n_multi if split == "train_multi" else 0) for split in dataset_info(name).sizes}


def prepare_datasets(names: Sequence[str], data_dir: str | os.PathLike, *, sizes: Mapping[str, Mapping[str, int]]
                     | None = None, fetch_mnist: bool = True, progress: bool = False) -> dict[str, Path | str]:
    """Make each missing dataset file under ``data_dir``; return its path, or why it could not be made.

    MNIST-based datasets first load MNIST from ``data_dir/mnist`` (downloading it there when
    ``fetch_mnist``); when that fails the entry is a ``"missing: ..."`` string naming the command to run.
    """
    from workbench.data.datasets import dataset_info, dataset_path, make_dataset
    from workbench.data.mnist import MnistUnavailableError, load_mnist

    data_dir = Path(data_dir)
    found: dict[str, Path | str] = {}
    mnist = None
    for name in names:
        path = Path(dataset_path(name, data_dir))
        if path.exists():
            found[name] = path
            continue
        try:
            if dataset_info(name).needs_mnist and mnist is None:
                mnist = load_mnist(cache_dir=data_dir / "mnist", download=fetch_mnist)
            found[name] = make_dataset(name, path, data_dir=data_dir, progress=progress,
                                       sizes=(sizes or {}).get(name), mnist=mnist)
        except MnistUnavailableError as exc:
            found[name] = f"missing: MNIST ({str(exc).splitlines()[0]}); run `hnnwb data get mnist`"
    return found
