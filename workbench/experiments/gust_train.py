"""Training a GUST network (spec gust.md §4): seeded, validated, early-stopped, resumable at any iteration.

Recipe (defaults of ``GustTrainConfig``): shapes_multiobj_3_3 ``train_multi[0:18000]`` for training and
``[18000:20000]`` for validation; batch 1024 shuffled every epoch (18 iterations, the last one 592
images); Adam lr 0.01 halved after epochs 60, 100 and 200; at most 400 epochs, stopping when more than 40
epochs pass without a better validation loss. Each batch: pixel dropout (keep iff U >= 0.65), fresh
h ~ U[0,1), zero refractory state, IT = 8 cycles; the receptive-field loss (§2.5) of the last cycle
against the clean image, summed over the batch. Validation: the 2000 images corrupted the same way with
a fixed seed (and, as §7 asks, also clean), loss summed over images; reported per image.

Every random draw of iteration ``i`` comes from a ``torch.Generator`` seeded by (seed, i) and every
epoch's shuffle from one seeded by (seed, epoch), so nothing but the weights, the Adam state and the
iteration counter has to be saved for an exact resume: ``last.pt`` is rewritten at every epoch end, at
the end of the run, every ``checkpoint_seconds`` and on Ctrl-C, and ``--resume`` continues bit-exactly
(tested). ``best.pt`` holds the weights of the best validation so far; ``history.json`` the per-iteration
training loss (per image) and every validation, which is where the paper's "two stages" would show.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from workbench.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from workbench.checks import require_nonnegative_int, require_positive_int
from workbench.fileio import write_json
from workbench.models.gust import (GustNet, GustParams, count_parameters, generator_draws, gust_config,
                                   gust_dynamics, gust_loss)

__all__ = ["GustTrainConfig", "GustTrainResult", "smoke_config", "train_gust", "load_training_data",
           "validation_loss", "training_curve", "run_train_command", "LR_STEPS"]

LR_STEPS: tuple[tuple[int, float], ...] = ((60, 0.5), (100, 0.5), (200, 0.5))
_SHUFFLE, _BATCH, _VALIDATION, _INIT = 1, 2, 3, 4  # sub-seed tags


@dataclass(frozen=True)
class GustTrainConfig:
    """Every constant of the training recipe (§4); the defaults are the reference's ``train.py``.

    Attributes:
        batch_size: images per iteration (1024; the loss is summed, so lr depends on it).
        lr: Adam learning rate; lr_steps: (epoch index, factor) applied at the end of that epoch.
        epochs: maximum epochs; patience: stop when more than this many epochs pass without improvement.
        iterations: stop after this many iterations in total (None = run the epochs), validating there.
        drop_p: input corruption, a pixel is kept iff U >= drop_p (35 % of the on-pixels shown).
        cycles: IT, cycles per training forward (8).
        n_train, n_val: training images ``train_multi[0:n_train]``, validation the next n_val.
        val_batch_size: images per validation forward (changes the validation draws, not the recipe).
        seed: seeds the init, shuffles, corruption, h init, neuron noise and keep masks.
        clean_val: also compute the validation loss with clean input (logged, not used for selection).
        checkpoint_seconds: rewrite last.pt at least this often (besides every epoch end).
        sparse: use the exact sparse fast path of ``gust_dynamics`` (same values, ~1.5x less CPU work).
        score_every: every this many epochs (and for the untrained net), score the grouping itself: AMI and
            SynScore at the last cycle on ``score_images`` labelled test images, one seed (``score_seed``),
            ``score_cycles`` cycles (§9 "training curve": look for the coarse -> fine stages). 0 = off.
            Logged only; selection stays on the validation loss.
        params: network constants (n_pixels follows the data).
    """

    batch_size: int = 1024
    lr: float = 0.01
    lr_steps: tuple[tuple[int, float], ...] = LR_STEPS
    epochs: int = 400
    patience: int = 40
    iterations: int | None = None
    drop_p: float = 0.65
    cycles: int = 8
    n_train: int = 18000
    n_val: int = 2000
    val_batch_size: int = 500
    seed: int = 0
    clean_val: bool = True
    checkpoint_seconds: float = 120.0
    sparse: bool = True
    score_every: int = 0
    score_images: int = 20
    score_cycles: int = 30
    score_seed: int = 0
    params: GustParams = field(default_factory=GustParams)

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "cycles", "n_train", "n_val", "val_batch_size"):
            require_positive_int(name, getattr(self, name))
        for name in ("score_every", "score_images", "score_cycles"):
            require_nonnegative_int(name, getattr(self, name))
        if self.score_every and (self.score_images < 1 or self.score_cycles < 2):
            raise ValueError(f"scoring needs score_images >= 1 and score_cycles >= 2, got "
                             f"{self.score_images}, {self.score_cycles}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 epochs, got {self.patience}")
        if self.iterations is not None and self.iterations < 0:
            raise ValueError(f"iterations must be >= 0 (or None for the whole schedule), got {self.iterations}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.drop_p < 1.0:
            raise ValueError(f"drop_p must lie in [0, 1), got {self.drop_p}")
        object.__setattr__(self, "lr_steps", tuple((int(e), float(f)) for e, f in self.lr_steps))

    @property
    def iterations_per_epoch(self) -> int:
        return -(-self.n_train // self.batch_size)

    @property
    def total_iterations(self) -> int:
        full = self.epochs * self.iterations_per_epoch
        return full if self.iterations is None else min(full, int(self.iterations))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_steps"] = [list(s) for s in self.lr_steps]
        d["params"] = self.params.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GustTrainConfig":
        d = dict(d)
        d["params"] = GustParams.from_dict(d.get("params", {}))
        d["lr_steps"] = tuple(tuple(s) for s in d.get("lr_steps", LR_STEPS))
        return cls(**d)


# Fields that may differ between an interrupted run and its resumption (they do not change the result
# of the iterations already done).
_RESUMABLE_CHANGES = {"epochs", "iterations", "checkpoint_seconds", "patience", "sparse", "score_every",
                      "score_images", "score_cycles", "score_seed"}


def smoke_config(**changes: Any) -> GustTrainConfig:
    """The §10.4 short-training smoke: batch 64, 300 iterations, lr 0.01 (reference val loss 0.00405)."""
    return dataclasses.replace(GustTrainConfig(batch_size=64, iterations=300, lr=0.01), **changes)


@dataclass
class GustTrainResult:
    net: GustNet  # holds the best-validation weights
    history: dict[str, Any]
    out: Path
    best_path: Path
    last_path: Path
    history_path: Path


def _subseed(seed: int, tag: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, tag, int(index)]).generate_state(1, np.uint64)[0]
               & 0x7FFF_FFFF_FFFF_FFFF)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# --- data ------------------------------------------------------------------------------------------


def load_training_data(path: str | Path, n_train: int = 18000, n_val: int = 2000
                       ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``train_multi[0:n_train]`` and ``[n_train:n_train+n_val]`` as float32 ``[n, N]`` plus the image shape."""
    from workbench.data.store import list_splits, read_split

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset {path} not found; make it with `hnnwb data make shapes_multiobj_3_3` "
                                "(or pass --data)")
    available = list_splits(path).get("train_multi")
    if available is None:
        raise ValueError(f"{path} has no 'train_multi' split; GUST trains on a shapes_multiobj_<a>_<b> file")
    if available[0] < n_train + n_val:
        raise ValueError(f"{path} train_multi has {available[0]} images, fewer than n_train + n_val = "
                         f"{n_train} + {n_val}; lower them or regenerate the dataset")
    images, _ = read_split(path, "train_multi", start=0, stop=n_train + n_val)
    shape = (int(images.shape[1]), int(images.shape[2]))
    x = torch.from_numpy(images.reshape(len(images), -1))
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{path} train_multi images must be binary 0/1 for GUST")
    return x[:n_train].contiguous(), x[n_train:].contiguous(), shape


# --- one iteration and the validation ----------------------------------------------------------------


def _forward_loss(net: GustNet, clean: torch.Tensor, config: GustTrainConfig, gen: torch.Generator,
                  *, corrupt: bool = True) -> torch.Tensor:
    """Summed receptive-field loss of one batch: dropout, U[0,1) h, IT cycles; draws in a fixed order."""
    p = net.params
    B, N = clean.shape
    keep_in = torch.rand(clean.shape, generator=gen, device=clean.device) >= config.drop_p
    x = clean * keep_in.to(clean.dtype) if corrupt else clean
    h0 = torch.rand((B, p.slots, p.hidden), generator=gen, device=clean.device)
    draws = generator_draws(B, N, p.keep_p, gen, clean.device)
    dyn = gust_dynamics(net, x, h0, config.cycles, draws, final_encode=False, sparse=config.sparse)
    return gust_loss(dyn.prediction, clean)


@torch.no_grad()
def validation_loss(net: GustNet, val: torch.Tensor, config: GustTrainConfig, *, corrupt: bool = True) -> float:
    """Validation loss per image (summed loss / n): fixed draws per validation batch, so the same weights
    always score the same."""
    total = 0.0
    for b, start in enumerate(range(0, len(val), config.val_batch_size)):
        gen = _generator(_subseed(config.seed, _VALIDATION, b), val.device)
        total += float(_forward_loss(net, val[start:start + config.val_batch_size], config, gen, corrupt=corrupt))
    return total / len(val)


def score_grouping(net: GustNet, data_file: str | Path, config: GustTrainConfig,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """AMI and SynScore (and AMI's two parts, ``silent_share`` and ``bound_ami``: see ``evaluate``) at the last of
    ``config.score_cycles`` cycles, mean over the first ``config.score_images`` images of the ``test`` split of
    ``data_file`` (seed ``config.score_seed``)."""
    from workbench.experiments.gust import evaluate

    was_training = net.training
    result = evaluate(net, data_file, split="test", images=config.score_images, seeds=(config.score_seed,),
                      cycles=config.score_cycles, device=device, progress=False)
    net.train(was_training)
    return {"ami": result["ami_mean"], "synscore": result["synscore_mean"],
            "ami_last5": result["ami_mean_last5"], "synscore_last5": result["synscore_mean_last5"],
            "silent_share": result["silent_share_mean"], "bound_ami": result["bound_ami_mean"],
            "images": config.score_images, "cycles": config.score_cycles, "seed": config.score_seed,
            "seconds": result["seconds"]["total"]}


# --- the loop --------------------------------------------------------------------------------------


def _new_history(config: GustTrainConfig) -> dict[str, Any]:
    return {"config": config.to_dict(), "iterations_per_epoch": config.iterations_per_epoch,
            "train_loss": [], "val": [], "scores": [], "best": None, "stopped_early": False, "finished": False,
            "seconds": 0.0, "train_seconds": 0.0, "train_cpu_seconds": 0.0}


def _config_changes(old: GustTrainConfig, new: GustTrainConfig) -> list[str]:
    a, b = old.to_dict(), new.to_dict()
    return [k for k in a if k not in _RESUMABLE_CHANGES and a[k] != b.get(k)]


def _check_schedule_extension(old: Sequence[tuple[int, float]], new: Sequence[tuple[int, float]],
                              epoch: int) -> None:
    """A resumed run may change its lr steps only at epoch ``epoch`` (the one in progress) or later: the
    steps before it have shaped the iterations already done, so changing them would misdescribe the run."""
    done_old = sorted(s for s in old if s[0] < epoch)
    done_new = sorted(s for s in new if s[0] < epoch)
    if done_old != done_new:
        raise ValueError(f"cannot resume at epoch {epoch} with lr steps {[list(s) for s in new]}: the steps before "
                         f"epoch {epoch} are already applied ({[list(s) for s in done_old]}); keep them and add or "
                         f"change only steps at epoch {epoch} or later")


def _progress_bar(total: int, initial: int, progress: bool):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, initial=initial, desc="train GUST", unit="it", disable=not (progress and interactive),
                leave=False)


def train_gust(data: str | Path | tuple[torch.Tensor, torch.Tensor, tuple[int, int]], out: str | Path,
               config: GustTrainConfig | None = None, *, resume: bool = False, device: str | torch.device = "cpu",
               progress: bool = True, log: Callable[[str], None] | None = None,
               stop_after: int | None = None, score_data: str | Path | None = None) -> GustTrainResult:
    """Train a GUST network with the §4 recipe into ``out`` (best.pt, last.pt, history.json).

    ``data`` is a dataset path or ``(train [n, N], val [m, N], image_shape)``. With ``resume=True`` and
    ``out/last.pt`` present, training continues exactly where it stopped (same config required, except
    ``epochs``/``iterations``/``patience``/``checkpoint_seconds``, and ``lr_steps`` at the epoch in progress
    or later: e.g. one more halving for a run whose validation loss has levelled off). ``stop_after`` ends
    this call after that many iterations in total without validating (as an interruption would; for tests). With
    ``config.score_every > 0``, the grouping is scored (``score_grouping``) on the ``test`` split of
    ``score_data`` (default: ``data`` when it is a path) into ``history["scores"]``.
    """
    config = config if config is not None else GustTrainConfig()
    device = torch.device(device)
    log = log or (lambda line: None)
    if score_data is None and isinstance(data, (str, Path)):
        score_data = data
    if config.score_every and score_data is None:
        raise ValueError("score_every > 0 needs labelled test images: pass score_data=<dataset .h5> "
                         "(or set score_every=0)")
    if isinstance(data, (str, Path)):
        train, val, shape = load_training_data(data, config.n_train, config.n_val)
    else:
        train, val, shape = data
        config = dataclasses.replace(config, n_train=len(train), n_val=len(val))
    N = shape[0] * shape[1]
    if train.shape[1] != N or val.shape[1] != N:
        raise ValueError(f"training images must be [n, {N}] for image shape {shape}")
    config = dataclasses.replace(config, params=dataclasses.replace(config.params, n_pixels=N))
    train, val = train.to(device), val.to(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    best_path, last_path, history_path = out / "best.pt", out / "last.pt", out / "history.json"

    net = GustNet(config.params, seed=_subseed(config.seed, _INIT, 0)).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    history = _new_history(config)
    iteration = 0
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        old = GustTrainConfig.from_dict(ckpt.config["train"])
        if ckpt.train_state is None:
            raise CheckpointError(f"{last_path} has no training state to resume from")
        iteration = int(ckpt.train_state["iteration"])
        changed = _config_changes(old, config)
        if changed == ["lr_steps"]:
            epoch_now = iteration // config.iterations_per_epoch
            _check_schedule_extension(old.lr_steps, config.lr_steps, epoch_now)
            log(f"lr steps {old.to_dict()['lr_steps']} -> {config.to_dict()['lr_steps']} from epoch {epoch_now} on")
        elif changed:
            raise ValueError(f"cannot resume {last_path}: the run used different {changed} "
                             f"({ {k: old.to_dict()[k] for k in changed} }); pass the same settings or a new --out")
        net.load_state_dict(ckpt.state_dict)
        optimiser.load_state_dict(ckpt.train_state["optimizer"])
        history = json.loads(ckpt.train_state["history"])
        history.setdefault("scores", [])
        history["config"] = config.to_dict()
        history["finished"] = False
        log(f"resumed {last_path} at iteration {iteration} (epoch {iteration // config.iterations_per_epoch})")
        if history["stopped_early"]:  # a larger --patience continues a run that stopped early
            history["stopped_early"] = _patience_spent(history, (iteration - 1) // config.iterations_per_epoch,
                                                       config.patience)
            if not history["stopped_early"]:
                log(f"patience {config.patience}: continuing after the early stop")
    elif resume:
        log(f"--resume: no {last_path} yet, starting a new run")
    best_state = (load_checkpoint(best_path).state_dict if history["best"] is not None and best_path.exists()
                  else copy.deepcopy(net.state_dict()))

    def save_last() -> None:
        history["seconds"] = prior_seconds + time.perf_counter() - started
        train_state = {"optimizer": optimiser.state_dict(), "iteration": iteration,
                       "history": json.dumps(history)}
        save_checkpoint(last_path, net, gust_config(net, train=config.to_dict()), extra=last_extra(),
                        train_state=train_state)
        write_json(history_path, history)

    def last_extra() -> dict[str, Any]:
        """last.pt's description, labelled like best.pt and the log (0-based index of the epoch it is in)."""
        extra = {"iteration": iteration, "epoch": (iteration - 1) // config.iterations_per_epoch if iteration else -1}
        latest = history["val"][-1] if history["val"] else None
        if latest is not None and latest["iteration"] == iteration:
            extra.update({k: latest[k] for k in ("val_loss", "val_loss_clean") if k in latest})
        return extra

    def validate(epoch: int) -> None:
        nonlocal best_state
        loss = validation_loss(net, val, config)
        entry = {"iteration": iteration, "epoch": epoch, "val_loss": loss,
                 "lr": float(optimiser.param_groups[0]["lr"]),
                 "seconds": prior_seconds + time.perf_counter() - started}
        if config.clean_val:
            entry["val_loss_clean"] = validation_loss(net, val, config, corrupt=False)
        history["val"].append(entry)
        best = history["best"]
        if best is None or loss < best["val_loss"]:
            history["best"] = dict(entry)
            best_state = copy.deepcopy(net.state_dict())
            save_checkpoint(best_path, best_state, gust_config(net, train=config.to_dict()), extra=entry)
        log(f"iteration {iteration} (epoch {epoch}): val loss/image {loss:.6f}"
            + (f", clean {entry['val_loss_clean']:.6f}" if config.clean_val else "")
            + f"; best {history['best']['val_loss']:.6f} at iteration {history['best']['iteration']}")

    def score(epoch: int) -> None:
        from workbench.experiments.gust import format_score as fmt

        entry = {"iteration": iteration, "epoch": epoch,
                 **score_grouping(net, score_data, config, device=device)}
        history["scores"].append(entry)
        log(f"iteration {iteration} (epoch {epoch}): grouping on {config.score_images} test images, cycle "
            f"{config.score_cycles - 1}: AMI {fmt(entry['ami'])}, SynScore {fmt(entry['synscore'])}; object pixels "
            f"grouped with the silent pixels {fmt(entry['silent_share'])}, AMI of the others {fmt(entry['bound_ami'])} "
            f"({entry['seconds']:.1f} s)")

    def score_due(epoch: int, epoch_end: bool) -> bool:
        if not config.score_every:
            return False
        final = iteration >= config.total_iterations
        return epoch < 0 or final or (epoch_end and (epoch + 1) % config.score_every == 0)

    prior_seconds, started = float(history["seconds"]), time.perf_counter()
    ipe, total = config.iterations_per_epoch, config.total_iterations
    if stop_after is not None:
        total = min(total, int(stop_after))
    pending: tuple[dict[str, Any], list[float]] | None = None  # state before an unfinished epoch end

    def end_block(epoch: int, epoch_end: bool) -> None:
        """Validate; at an epoch end also step the rate and check the patience; then save last.pt."""
        nonlocal pending
        pending = (copy.deepcopy(history), [g["lr"] for g in optimiser.param_groups])
        validate(epoch)
        if score_due(epoch, epoch_end):
            score(epoch)
        if epoch_end:
            for after_epoch, factor in config.lr_steps:
                if epoch == after_epoch:
                    for group in optimiser.param_groups:
                        group["lr"] *= factor
            history["stopped_early"] = _patience_spent(history, epoch, config.patience)
        save_last()
        pending = None

    def needs_end_block(it: int) -> bool:  # an epoch end (or the --iterations cut) not yet validated
        due = it > 0 and (it % ipe == 0 or it == config.total_iterations)
        return due and (not history["val"] or history["val"][-1]["iteration"] != it)

    bar = _progress_bar(total, min(iteration, total), progress)
    last_save = time.perf_counter()
    order: torch.Tensor | None = None
    try:
        if not history["val"]:
            end_block(-1, epoch_end=False)  # the untrained net (§10.3: 0.00677 per image)
        if needs_end_block(iteration):  # interrupted during an epoch end: redo it
            end_block((iteration - 1) // ipe, epoch_end=iteration % ipe == 0)
        while iteration < total and not history["stopped_early"]:
            epoch, j = divmod(iteration, ipe)
            if order is None or j == 0:
                order = torch.randperm(len(train), generator=_generator(_subseed(config.seed, _SHUFFLE, epoch),
                                                                        torch.device("cpu"))).to(device)
            net.train()
            clean = train[order[j * config.batch_size:(j + 1) * config.batch_size]]
            tick, cpu_tick = time.perf_counter(), time.process_time()
            gen = _generator(_subseed(config.seed, _BATCH, iteration), device)
            loss = _forward_loss(net, clean, config, gen)
            loss_per_image = float(loss.detach()) / len(clean)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            iteration += 1
            history["train_loss"].append(loss_per_image)
            history["train_seconds"] += time.perf_counter() - tick
            history["train_cpu_seconds"] = history.get("train_cpu_seconds", 0.0) + time.process_time() - cpu_tick
            bar.update(1)
            bar.set_postfix(loss=f"{loss_per_image:.5f}", epoch=epoch)
            if needs_end_block(iteration):
                end_block(epoch, epoch_end=j == ipe - 1)
                last_save = time.perf_counter()
            elif time.perf_counter() - last_save > config.checkpoint_seconds:
                save_last()
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        if pending is not None:  # roll back a half-done epoch end; --resume redoes it
            history.clear()
            history.update(pending[0])
            for group, lr in zip(optimiser.param_groups, pending[1]):
                group["lr"] = lr
        save_last()
        log(f"interrupted: saved {last_path} at iteration {iteration}; continue with --resume")
        raise
    finally:
        bar.close()
    history["finished"] = iteration >= config.total_iterations or history["stopped_early"]
    save_last()
    net.load_state_dict(best_state)
    net.eval()
    return GustTrainResult(net, history, out, best_path, last_path, history_path)


def _best_epoch(history: Mapping[str, Any]) -> int:
    return int(history["best"]["epoch"]) if history["best"] is not None else -1


def _patience_spent(history: Mapping[str, Any], epoch: int, patience: int) -> bool:
    return epoch - _best_epoch(history) > patience


# --- reading the logs --------------------------------------------------------------------------------


def training_curve(history: str | Path | Mapping[str, Any], smooth: int = 1) -> dict[str, np.ndarray]:
    """Loss curves from a run's ``history.json`` (or its dict): per-iteration training loss per image
    (moving average over ``smooth`` iterations), the validation losses at their iterations and, when the
    run scored its grouping (``score_every``), ``score_epoch`` / ``score_ami`` / ``score_synscore``."""
    if not isinstance(history, Mapping):
        history = json.loads(Path(history).read_text())
    train = np.asarray(history["train_loss"], dtype=np.float64)
    if smooth > 1 and len(train) >= smooth:
        kernel = np.ones(smooth) / smooth
        train_smooth = np.convolve(train, kernel, mode="valid")
        iters_smooth = np.arange(smooth, len(train) + 1)
    else:
        train_smooth, iters_smooth = train, np.arange(1, len(train) + 1)
    val = history["val"]
    return {"iteration": iters_smooth, "train_loss": train_smooth,
            "val_iteration": np.asarray([v["iteration"] for v in val]),
            "val_loss": np.asarray([v["val_loss"] for v in val], dtype=np.float64),
            "val_loss_clean": np.asarray([v.get("val_loss_clean", np.nan) for v in val], dtype=np.float64),
            **_score_arrays(history.get("scores", []))}


def _score_arrays(scores: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The periodic grouping scores as arrays (NaN where undefined); empty when scoring was off."""
    value = lambda s, k: np.nan if s.get(k) is None else float(s[k])  # noqa: E731
    return {"score_iteration": np.asarray([s["iteration"] for s in scores], dtype=np.int64),
            "score_epoch": np.asarray([s["epoch"] for s in scores], dtype=np.int64),
            "score_ami": np.asarray([value(s, "ami") for s in scores], dtype=np.float64),
            "score_synscore": np.asarray([value(s, "synscore") for s in scores], dtype=np.float64)}


# --- CLI ---------------------------------------------------------------------------------------------


def _parse_lr_steps(text: str | None) -> tuple[tuple[int, float], ...] | None:
    """``"60:0.5,100:0.5"`` -> ((60, 0.5), (100, 0.5)); ``""`` -> no steps; None -> None (keep the default)."""
    if text is None:
        return None
    steps = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        epoch, sep, factor = item.partition(":")
        try:
            step = (int(epoch), float(factor))
        except ValueError:
            step = None
        if not sep or step is None or step[0] < 0 or not (math.isfinite(step[1]) and step[1] > 0):
            raise ValueError(f"--lr-steps takes EPOCH:FACTOR pairs separated by commas, e.g. 60:0.5,100:0.5 "
                             f"(epoch >= 0, factor > 0); got {item!r}")
        steps.append(step)
    return tuple(sorted(steps))


def run_train_command(args: argparse.Namespace) -> int:
    """``hnnwb gust train``: build the config from the arguments, make the dataset if missing, train."""
    from workbench.data.store import list_splits
    from workbench.runtime import configure_threads, resolve_device

    threads = configure_threads(args.threads)
    device = resolve_device(args.device)
    if args.objects < 1:
        raise ValueError(f"--objects must be >= 1, got {args.objects}")
    name = f"shapes_multiobj_{args.objects}_3"
    data = args.data
    if data is None:
        data = Path("data") / f"{name}.h5"
        if not data.exists():
            from workbench.data.datasets import make_dataset

            print(f"{data} missing: generating {name} ...", flush=True)
            data = make_dataset(name, data, data_dir=Path("data"), progress=not args.no_progress)
    changes = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr), ("epochs", args.epochs),
                                 ("lr_steps", _parse_lr_steps(getattr(args, "lr_steps", None))),
                                 ("iterations", args.iterations), ("patience", args.patience),
                                 ("seed", args.seed), ("n_train", args.n_train), ("n_val", args.n_val),
                                 ("score_every", getattr(args, "score_every", None)),
                                 ("score_images", getattr(args, "score_images", None)))
               if v is not None}
    if getattr(args, "dense", False):
        changes["sparse"] = False
    config = dataclasses.replace(GustTrainConfig(), **changes)
    if config.score_every and "test" not in list_splits(data):
        print(f"{data} has no test split: periodic grouping scores are off", flush=True)
        config = dataclasses.replace(config, score_every=0)
    out = args.out or Path("runs") / "gust" / f"train_{args.objects}"
    steps = ", ".join(f"x{f:g} after epoch {e}" for e, f in config.lr_steps) or "no steps"
    print(f"gust train: {data}, batch {config.batch_size}, lr {config.lr} ({steps}), "
          f"{config.total_iterations} iterations max ({config.iterations_per_epoch}/epoch), seed {config.seed}, "
          f"device {device}, threads {threads}, out {out}", flush=True)
    result = train_gust(data, out, config, resume=args.resume, device=device, progress=not args.no_progress,
                        log=lambda line: print(line, flush=True))
    h, best = result.history, result.history["best"]
    n_params = count_parameters(result.net)
    n_iter = max(len(h["train_loss"]), 1)
    print(f"trained GUST ({n_params} parameters): {len(h['train_loss'])} iterations in {h['seconds']:.1f} s "
          f"({h['train_seconds'] / n_iter:.3f} s wall, {h.get('train_cpu_seconds', 0.0) / n_iter:.3f} s CPU per "
          f"training iteration); best val loss/image "
          f"{best['val_loss']:.6f} at iteration {best['iteration']}; "
          f"{'stopped early; ' if h['stopped_early'] else ''}wrote {result.best_path}, {result.last_path}, "
          f"{result.history_path}", flush=True)
    return 0
