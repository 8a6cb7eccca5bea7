"""SNN-IIR associative memory: presets, training, evaluation, corruption sweep (specs/snn_iir.md §4).

* ``PRESETS``: ``assoc_ref`` (faithful: batch 64, 20 epochs, free coefficients) and ``assoc_long``
  (acceptance: batch 32, 100 epochs, ``parametrisation="stable"``); ``smoke_config()`` for CI.
  Both: T = 300, 1,000 items per epoch (drop_last), AdamW lr 1e-3 (weight decay 0.01),
  MultiStepLR [50, 100, 150] γ 0.1 per epoch, torch seed 2, cue seed 0.
* ``train_assoc(config, out_dir, resume=...)`` keeps ``best.pt`` (lowest validation loss: 320 corrupted
  cues, seed 1001), ``last.pt`` (+ optimiser, scheduler, fall-back level: resume continues the same
  trajectory) and ``history.json`` (train/val loss, lr, max pole modulus per epoch, the silent baseline).
* Divergence fall-backs (spec §4.4), with ``fallback="auto"``: when a batch loss is non-finite or above
  ``diverge_factor`` × the silent baseline, the epoch is rolled back to its start and re-run with the next
  level: 1 = gradient-norm clipping at 1.0, 2 = clipping and lr 5e-4. Beyond level 2 the run stops with
  an error. Each fall-back is written to ``history["fallbacks"]``.
* ``evaluate_assoc`` / ``evaluate_checkpoint``: filtered MSE next to the silent baseline, spike
  precision/recall within ±2 steps, nearest-stored-pattern identification, spike counts; on the test set
  (1,000 corrupted cues, seed 2002), the validation set, or the 10 clean cues.
* ``corruption_sweep``: loss against one corruption parameter (e.g. noise probability).
* ``recall_examples``: cue / output / target rasters for the views.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from workbench.checkpoints import CheckpointError, load_checkpoint, load_for_resume
from workbench.checks import require_choice, require_positive
from workbench.data.spike_patterns import (CorruptionParams, corrupt, delayed_target, file_sha256,
                                           load_pattern_images, make_patterns,
                                           silent_baselines)
from workbench.experiments.snn_iir import RunResult, save_epoch
from workbench.models.assoc_memory import AssocSNN, assoc_loss
from workbench.models.snn_layers import project_filters_
from workbench.neurons.iir import PARAMETRISATIONS

__all__ = ["AssocConfig", "PRESETS", "smoke_config", "AssocResult", "train_assoc", "load_assoc", "evaluate_assoc",
           "evaluate_checkpoint", "cue_set", "task_patterns", "corruption_sweep", "recall_examples",
           "shipped_checkpoint", "FALLBACKS"]

FALLBACKS = ({"clip_grad_norm": None, "lr": None}, {"clip_grad_norm": 1.0, "lr": None},
             {"clip_grad_norm": 1.0, "lr": 5e-4})
SPLITS = ("test", "val", "clean")


@dataclass(frozen=True)
class AssocConfig:
    """Training recipe of the associative memory; every constant of spec §4.4 as a named default."""

    preset: str = "assoc_ref"
    epochs: int = 20
    items_per_epoch: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    milestones: tuple[int, ...] = (50, 100, 150)
    gamma: float = 0.1
    parametrisation: str = "free"
    hidden: tuple[int, ...] = (500, 200, 500)
    steps: int = 300  # time steps used (patterns are cropped to the first `steps`; SMOKE uses fewer)
    torch_seed: int = 2  # model initialisation
    cue_seed: int = 0  # training cues: corrupt(seed=cue_seed, epoch, item)
    val_n: int = 320
    val_seed: int = 1001
    test_n: int = 1000
    test_seed: int = 2002
    max_iters: int | None = None  # cap on iterations per epoch (SMOKE)
    clip_grad_norm: float | None = None  # starting fall-back settings (level 0)
    fallback: str = "auto"  # "auto": roll back and escalate on divergence; "off": never
    diverge_factor: float = 5.0  # batch loss above diverge_factor x silent baseline counts as divergence
    eval_batch: int = 64
    patterns_file: str | None = None  # None: the project's ten patterns; else a [P, 300, 300] .npy/.npz of images
    patterns_sha256: str | None = None  # recorded by train_assoc so evaluation can check it reads the same file

    def __post_init__(self) -> None:
        require_choice("parametrisation", self.parametrisation, PARAMETRISATIONS)
        require_choice("fallback", self.fallback, ("auto", "off"))
        for name in ("epochs", "items_per_epoch", "batch_size", "steps", "val_n", "test_n", "eval_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size > self.items_per_epoch:
            raise ValueError(f"batch_size {self.batch_size} exceeds items_per_epoch {self.items_per_epoch}: with "
                             "drop_last no batch would run; lower batch_size")
        require_positive("lr", self.lr)
        require_positive("diverge_factor", self.diverge_factor)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"], d["hidden"] = list(self.milestones), list(self.hidden)
        return d

    @property
    def iterations_per_epoch(self) -> int:
        n = self.items_per_epoch // self.batch_size
        return n if self.max_iters is None else min(n, self.max_iters)


PRESETS: dict[str, AssocConfig] = {
    "assoc_ref": AssocConfig(preset="assoc_ref"),
    "assoc_long": AssocConfig(preset="assoc_long", epochs=100, batch_size=32, parametrisation="stable"),
}


def smoke_config(**overrides: Any) -> AssocConfig:
    """CI recipe: tiny network (300-48-24-48-300), 100 steps, 1 epoch of 3 iterations of 8 cues, 16 val cues."""
    base = dataclasses.replace(PRESETS["assoc_long"], preset="smoke", epochs=1, items_per_epoch=24, batch_size=8,
                               hidden=(48, 24, 48), steps=100, val_n=16, test_n=20, max_iters=3, eval_batch=16)
    return dataclasses.replace(base, **overrides)


@dataclass
class AssocResult(RunResult):
    @property
    def best_val_loss(self) -> float:
        return float(self.history["best_val_loss"])


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _progress(total: int, progress: bool, desc: str, unit: str = "it"):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, desc=desc, unit=unit, disable=not (progress and interactive), leave=False)


def task_patterns(steps: int = 300, patterns_file: str | os.PathLike | None = None,
                  sha256: str | None = None) -> torch.Tensor:
    """The stored patterns cropped to the first ``steps`` steps, ``[P, steps, 300]``: the project's ten, or
    the images in ``patterns_file`` (checked against ``sha256`` when given)."""
    if patterns_file is None:
        return make_patterns()[:, :steps].contiguous()
    if sha256 is not None and Path(patterns_file).is_file() and file_sha256(patterns_file) != sha256:
        raise ValueError(f"pattern file {patterns_file} differs from the one the memory was trained on (sha256 "
                         f"{sha256[:12]}...); pass the original file with --patterns")
    return make_patterns(load_pattern_images(patterns_file))[:, :steps].contiguous()


def config_patterns(config: AssocConfig) -> torch.Tensor:
    """The patterns a training config names (the project's ten unless ``patterns_file`` is set)."""
    return task_patterns(config.steps, config.patterns_file, config.patterns_sha256)


def with_patterns_file(config: AssocConfig, patterns_file: str | os.PathLike | None) -> AssocConfig:
    """``config`` training on ``patterns_file`` (None keeps the project's patterns), its SHA-256 recorded."""
    if patterns_file is None:
        return dataclasses.replace(config, patterns_file=None, patterns_sha256=None)
    load_pattern_images(patterns_file)  # fail early on a missing or malformed file
    return dataclasses.replace(config, patterns_file=str(patterns_file), patterns_sha256=file_sha256(patterns_file))


def _build(config: AssocConfig) -> AssocSNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.torch_seed))
        return AssocSNN((300, *config.hidden, 300), parametrisation=config.parametrisation)


def _filtered_targets(model: AssocSNN, patterns: torch.Tensor) -> torch.Tensor:
    """Filtered delayed targets of every stored pattern, ``[T, P, N]``."""
    with torch.no_grad():
        return model.readout(delayed_target(patterns).transpose(0, 1))


def cue_set(patterns: torch.Tensor, split: str, config: AssocConfig | None = None,
            n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed cues of a split: ``(cues [T, n, N], pattern ids [n])``.

    "val": 320 corrupted cues, seed 1001; "test": 1,000 corrupted cues, seed 2002 (epoch 0, items 0..n-1);
    "clean": the stored patterns themselves.
    """
    require_choice("split", split, SPLITS)
    config = config or AssocConfig()
    if split == "clean":
        ids = torch.arange(patterns.shape[0])
        return patterns.transpose(0, 1).contiguous(), ids
    count = n if n is not None else (config.val_n if split == "val" else config.test_n)
    seed = config.val_seed if split == "val" else config.test_seed
    ids = torch.arange(count)
    return corrupt(patterns, ids, seed, 0), ids % patterns.shape[0]


def _set_fallback(optimiser: torch.optim.Optimizer, scheduler: Any, config: AssocConfig, level: int) -> float | None:
    """Apply fall-back ``level`` (lr change) to optimiser and scheduler; returns the clipping norm to use."""
    settings = FALLBACKS[level]
    if settings["lr"] is not None:
        decay = config.gamma ** sum(1 for m in config.milestones if scheduler.last_epoch >= m)
        scheduler.base_lrs = [settings["lr"] for _ in scheduler.base_lrs]
        for group in optimiser.param_groups:
            group["initial_lr"] = settings["lr"]
            group["lr"] = settings["lr"] * decay
    clip = settings["clip_grad_norm"]
    return clip if clip is not None else config.clip_grad_norm


def _new_history(baseline: float) -> dict[str, Any]:
    return {"train_loss": [], "val_loss": [], "lr": [], "max_pole_modulus": [], "out_spikes": [],
            "epoch_seconds": [], "best_epoch": -1, "best_val_loss": math.inf, "silent_baseline": baseline,
            "fallback_level": 0, "fallbacks": [], "seconds": 0.0}


class _Diverged(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


def train_epoch(model: AssocSNN, optimiser: torch.optim.Optimizer, patterns: torch.Tensor,
                targets: torch.Tensor, config: AssocConfig, epoch: int, *, clip: float | None = None,
                limit: float = math.inf, progress: bool = False) -> tuple[float, float]:
    """One epoch of freshly corrupted cues; returns (mean batch loss, mean output spikes per cue)."""
    gen = torch.Generator().manual_seed(int(config.cue_seed) * 1_000_003 + int(epoch) * 7_919 + 17)
    order = torch.randperm(config.items_per_epoch, generator=gen)
    batches = list(order.split(config.batch_size))
    batches = [b for b in batches if len(b) == config.batch_size][: config.iterations_per_epoch]  # drop_last
    model.train()
    losses, spikes = [], []
    bar = _progress(len(batches), progress, f"epoch {epoch}")
    try:
        for idx in batches:
            cues = corrupt(patterns, idx, config.cue_seed, epoch)
            out = model(cues)
            loss = assoc_loss(model.readout(out), targets[:, idx % patterns.shape[0]])
            value = float(loss.detach())
            if not math.isfinite(value) or value > limit:
                raise _Diverged(f"epoch {epoch}: batch loss {value:.4g} (limit {limit:.4g})")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimiser.step()
            project_filters_(model)
            losses.append(value)
            spikes.append(float(out.detach().sum()) / len(idx))
            bar.set_postfix(loss=f"{value:.4f}")
            bar.update(1)
    finally:
        bar.close()
    return float(np.mean(losses)), float(np.mean(spikes))


def _batched_loss(model: AssocSNN, cues: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor,
                  batch: int) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, cues.shape[1], batch):
            sl = slice(start, start + batch)
            out = model(cues[:, sl])
            total += float(assoc_loss(model.readout(out), targets[:, ids[sl]])) * out.shape[1]
    return total / cues.shape[1]


def train_assoc(config: AssocConfig | str, out_dir: str | os.PathLike, *, resume: bool = False,
                progress: bool = True, device: str | torch.device = "cpu",
                log: Callable[[str], None] | None = None) -> AssocResult:
    """Train the associative memory with ``config`` (or a preset name) into ``out_dir``.

    Writes best.pt (by validation loss), last.pt (with optimiser/scheduler state, for ``resume=True``)
    and history.json after every epoch. A resumed run follows the same trajectory as an uninterrupted one.
    """
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown preset {config!r}; choose one of {sorted(PRESETS)}")
        config = PRESETS[config]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    best_path, last_path, history_path = out / "best.pt", out / "last.pt", out / "history.json"
    dev = torch.device(device)
    if config.patterns_file is not None and config.patterns_sha256 is None:
        config = with_patterns_file(config, config.patterns_file)
    patterns = config_patterns(config)
    baseline = float(silent_baselines(patterns).mean())
    patterns = patterns.to(dev)
    model = _build(config).to(dev)
    targets = _filtered_targets(model, patterns)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=list(config.milestones), gamma=config.gamma)
    run_config = {"model": "AssocSNN", "kwargs": model.config_kwargs(), "training": config.to_dict()}
    history = _new_history(baseline)
    if resume and last_path.exists():
        last = load_for_resume(last_path, run_config, may_change=["training.epochs"])
        model.load_state_dict(last.state_dict)
        optimiser.load_state_dict(last.train_state["optimizer"])  # load_state_dict moves the moments to dev
        scheduler.load_state_dict(last.train_state["scheduler"])
        history = last.extra["history"]
    clip = _set_fallback(optimiser, scheduler, config, history["fallback_level"]) if history["fallback_level"] else \
        config.clip_grad_norm
    val_cues, val_ids = cue_set(patterns, "val", config)
    start_epoch = len(history["train_loss"])
    limit = config.diverge_factor * baseline if config.fallback == "auto" else math.inf
    bar = _progress(config.epochs, progress, f"train {config.preset}", unit="epoch")
    bar.update(min(start_epoch, config.epochs))
    try:
        epoch = start_epoch
        while epoch < config.epochs:
            clock = time.perf_counter()
            lr = float(optimiser.param_groups[0]["lr"])
            snapshot = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimiser.state_dict()),
                        copy.deepcopy(scheduler.state_dict()))
            try:
                loss, out_spikes = train_epoch(model, optimiser, patterns, targets, config, epoch, clip=clip,
                                               limit=limit, progress=progress)
            except _Diverged as exc:
                level = history["fallback_level"] + 1
                if level >= len(FALLBACKS):
                    raise RuntimeError(f"{exc}; every documented fall-back ({FALLBACKS[1:]}) has been tried. Resume "
                                       f"from {best_path} with a lower --lr, or use --parametrisation stable") from exc
                model.load_state_dict(snapshot[0])
                optimiser.load_state_dict(snapshot[1])
                scheduler.load_state_dict(snapshot[2])
                history["fallback_level"] = level
                history["fallbacks"].append({"epoch": epoch, "level": level, "reason": str(exc), **FALLBACKS[level]})
                clip = _set_fallback(optimiser, scheduler, config, level)
                warnings.warn(f"{exc}: diverged; rolled back to the start of epoch {epoch} and re-running it with "
                              f"fall-back {level} {FALLBACKS[level]}")
                if log is not None:
                    log(f"epoch {epoch}: diverged ({exc}); fall-back {level} {FALLBACKS[level]}")
                continue
            scheduler.step()
            val_loss = _batched_loss(model, val_cues, targets, val_ids, config.eval_batch)
            pole = model.max_pole_modulus()
            if pole >= 1.0:
                warnings.warn(f"epoch {epoch}: an IIR filter pole has modulus {pole:.4f} >= 1 (unstable)")
            seconds = time.perf_counter() - clock
            for key, value in (("train_loss", loss), ("val_loss", val_loss), ("lr", lr), ("max_pole_modulus", pole),
                               ("out_spikes", out_spikes), ("epoch_seconds", round(seconds, 3))):
                history[key].append(value)
            history["seconds"] = round(history["seconds"] + seconds, 3)
            improved = val_loss < history["best_val_loss"]
            if improved:
                history["best_epoch"], history["best_val_loss"] = epoch, val_loss
            extra = {"epoch": epoch, "val_loss": val_loss, "best_epoch": history["best_epoch"],
                     "best_val_loss": history["best_val_loss"], "silent_baseline": baseline,
                     "torch": torch.__version__, "history": history}
            save_epoch(RunResult(best_path, last_path, history_path, history), model, run_config, extra,
                       optimiser, scheduler, improved=improved)
            if log is not None:
                log(f"epoch {epoch}: train {loss:.5f} val {val_loss:.5f} (silent {baseline:.4f}) "
                    f"out spikes/cue {out_spikes:.0f} max|pole| {pole:.4f} lr {lr:g} {seconds:.1f}s"
                    f"{' *' if improved else ''}")
            bar.update(1)
            epoch += 1
    finally:
        bar.close()
    return AssocResult(best_path, last_path, history_path, history)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------


def shipped_checkpoint() -> Path:
    """The trained memory shipped with the workbench (``data/checkpoints/snn_iir_assoc.pt``)."""
    return Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "snn_iir_assoc.pt"


def load_assoc(path: str | os.PathLike | None = None, *,
               device: str | torch.device = "cpu") -> tuple[AssocSNN, dict[str, Any]]:
    """Rebuild an ``AssocSNN`` (eval mode) from a checkpoint; returns (model, checkpoint config)."""
    path = Path(path) if path is not None else shipped_checkpoint()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `hnnwb snn-iir assoc-train --preset "
                                f"assoc_long --out runs/snn_iir/assoc_long` and pass its best.pt")
    ckpt = load_checkpoint(path)
    if ckpt.config.get("model") != "AssocSNN":
        raise CheckpointError(f"{path} holds a {ckpt.config.get('model')!r}, not an AssocSNN")
    model = AssocSNN(**ckpt.config["kwargs"])
    model.load_state_dict(ckpt.state_dict)
    return model.to(device).eval(), ckpt.config


def _dilate(spikes: torch.Tensor, radius: int) -> torch.Tensor:
    """Spikes ``[T, B, N]`` widened by ±radius steps along time."""
    T, B, N = spikes.shape
    x = spikes.permute(1, 2, 0).reshape(B * N, 1, T)
    y = F.max_pool1d(x, 2 * radius + 1, stride=1, padding=radius)
    return y.reshape(B, N, T).permute(2, 0, 1)


def evaluate_assoc(model: AssocSNN, patterns: torch.Tensor, cues: torch.Tensor, pattern_ids: torch.Tensor, *,
                   batch_size: int = 64, tolerance: int = 2) -> dict[str, Any]:
    """Scores of a model on cues ``[T, n, N]`` whose stored patterns are ``pattern_ids``.

    ``loss`` (filtered MSE) beside ``silent_baseline`` (the loss of an all-silent output on the same
    targets), spike ``precision``/``recall`` within ±tolerance steps, ``identification`` (fraction of cues
    whose output is nearest, in filtered MSE, to the filtered target of its own pattern), spike counts.
    """
    model.eval()
    dev = next(model.buffers()).device
    patterns = patterns.to(dev)
    targets = _filtered_targets(model, patterns)  # [T, P, N]
    raw_targets = delayed_target(patterns).transpose(0, 1)  # [T, P, N]
    pattern_ids = torch.as_tensor(pattern_ids, dtype=torch.long)
    total = 0.0
    hits_out = n_out = hits_target = n_target = correct = 0
    per_cue_loss = []
    clock = time.perf_counter()
    with torch.no_grad():
        for start in range(0, cues.shape[1], batch_size):
            sl = slice(start, start + batch_size)
            ids = pattern_ids[sl]
            out = model(cues[:, sl].to(dev))
            fo = model.readout(out)
            ft = targets[:, ids]
            per_cue = (fo - ft).pow(2).mean(dim=(0, 2))
            per_cue_loss.append(per_cue)
            total += float(per_cue.sum())
            ids = ids.to(dev)
            dist = (fo.unsqueeze(2) - targets.unsqueeze(1)).pow(2).mean(dim=(0, 3))  # [b, P]
            correct += int((dist.argmin(dim=1) == ids).sum())
            tgt = raw_targets[:, ids]
            hits_out += int((out * _dilate(tgt, tolerance)).sum())
            n_out += int(out.sum())
            hits_target += int((tgt * _dilate(out, tolerance)).sum())
            n_target += int(tgt.sum())
    n = cues.shape[1]
    per_cue_loss = torch.cat(per_cue_loss).cpu()
    baselines = silent_baselines(patterns.cpu())
    return {
        "loss": total / n,
        "silent_baseline": float(baselines[pattern_ids].mean()),
        "n_cues": n,
        "precision": hits_out / n_out if n_out else 0.0,
        "recall": hits_target / n_target if n_target else 0.0,
        "tolerance_steps": tolerance,
        "identification": correct / n,
        "out_spikes_per_cue": n_out / n,
        "target_spikes_per_cue": n_target / n,
        "loss_per_pattern": [float(per_cue_loss[pattern_ids == p].mean()) if bool((pattern_ids == p).any())
                             else None for p in range(patterns.shape[0])],
        "seconds": round(time.perf_counter() - clock, 3),
    }


def evaluate_checkpoint(path: str | os.PathLike | None = None, *, splits: Sequence[str] = ("test", "clean"),
                        n: int | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
                        patterns_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """RESULT.json content: ``loss`` (test, freshly corrupted cues) beside ``silent_baseline``, plus
    per-split details (``splits[name]``) and the filters' max pole modulus.

    A memory trained on a pattern file is scored on that file (its recorded path, or ``patterns_file``
    when it has moved; the SHA-256 must match)."""
    model, config = load_assoc(path, device=device)
    training = AssocConfig(**{**config["training"], "milestones": tuple(config["training"]["milestones"]),
                              "hidden": tuple(config["training"]["hidden"])})
    if patterns_file is not None:
        if training.patterns_sha256 is None:
            raise ValueError("this memory was trained on the project's own patterns; drop --patterns")
        training = dataclasses.replace(training, patterns_file=str(patterns_file))
    elif training.patterns_file is not None and not Path(training.patterns_file).is_file():
        raise FileNotFoundError(f"the memory was trained on {training.patterns_file}, which is not there; pass "
                                "the file with --patterns")
    patterns = config_patterns(training)
    result: dict[str, Any] = {"checkpoint": str(path if path is not None else shipped_checkpoint()),
                              "preset": training.preset, "patterns_file": training.patterns_file, "max_pole_modulus": model.max_pole_modulus(), "splits": {}}
    for split in splits:
        cues, ids = cue_set(patterns, split, training, n)
        result["splits"][split] = {**evaluate_assoc(model, patterns, cues, ids, batch_size=batch_size),
                                   **({"seed": training.test_seed if split == "test" else training.val_seed}
                                      if split != "clean" else {})}
    first = result["splits"][splits[0]]
    result["split"], result["loss"], result["silent_baseline"] = splits[0], first["loss"], first["silent_baseline"]
    return result


def corruption_sweep(model: AssocSNN, patterns: torch.Tensor, field: str = "p_noise",
                     values: Sequence[float] = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.04), *,
                     base: CorruptionParams | None = None, n: int = 100, seed: int = 3003,
                     batch_size: int = 64) -> dict[str, Any]:
    """Loss (and identification) against one ``CorruptionParams`` field, ``n`` cues per value, fixed seed."""
    base = base or CorruptionParams()
    if field not in {f.name for f in dataclasses.fields(CorruptionParams)}:
        raise ValueError(f"unknown corruption field {field!r}; choose one of "
                         f"{[f.name for f in dataclasses.fields(CorruptionParams)]}")
    rows = []
    ids = torch.arange(n)
    for value in values:
        params = dataclasses.replace(base, **{field: type(getattr(base, field))(value)})
        cues = corrupt(patterns, ids, seed, 0, params)
        scores = evaluate_assoc(model, patterns, cues, ids % patterns.shape[0], batch_size=batch_size)
        rows.append({"value": float(value), **{k: scores[k] for k in ("loss", "silent_baseline", "identification",
                                                                     "precision", "recall")}})
    return {"field": field, "values": [float(v) for v in values], "rows": rows,
            "loss": [r["loss"] for r in rows], "silent_baseline": rows[0]["silent_baseline"] if rows else None}


def recall_examples(model: AssocSNN, patterns: torch.Tensor, pattern_ids: Sequence[int] = (0, 7, 1, 8), *,
                    corrupted: Sequence[bool] = (True, True, False, False), seed: int = 4004,
                    params: CorruptionParams | None = None) -> dict[str, Any]:
    """Cue, output and target rasters for a few patterns (numpy bool ``[k, T, N]`` each).

    ``corrupted[i]`` True: the cue is modified (jitter/deletion, p_modify = 1) plus noise; False: noise only.
    """
    if len(pattern_ids) != len(corrupted):
        raise ValueError(f"pattern_ids ({len(pattern_ids)}) and corrupted ({len(corrupted)}) must have equal length")
    base = params or CorruptionParams()
    ids = torch.as_tensor(list(pattern_ids), dtype=torch.long)
    cues = []
    for i, (pid, bad) in enumerate(zip(ids.tolist(), corrupted)):
        p = dataclasses.replace(base, p_modify=1.0 if bad else 0.0)
        cues.append(corrupt(patterns, torch.tensor([pid + patterns.shape[0] * i]), seed, 0, p))
    cues_t = torch.cat(cues, dim=1)
    model.eval()
    dev = next(model.buffers()).device
    with torch.no_grad():
        out = model(cues_t.to(dev)).cpu()
    target = delayed_target(patterns[ids])
    return {"pattern_ids": ids.tolist(), "corrupted": list(map(bool, corrupted)),
            "clean": patterns[ids].numpy() > 0, "cue": cues_t.transpose(0, 1).numpy() > 0,
            "output": out.transpose(0, 1).numpy() > 0, "target": target.numpy() > 0}
