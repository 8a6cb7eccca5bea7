"""SNN-IIR MNIST experiments: data splits, augmentation, training, evaluation (specs/snn_iir.md §3).

* ``mnist_splits``  train / validation / test as uint8 tensors. Full: the first 50,000 official training
  images train, the last 10,000 validate (model selection), the official 10,000 test (scored, never used to
  select). ``smoke=True``: the 5k subset of §3.4 (the first 500 training images of each class: 350 train,
  50 validation, the last 100 test).
* ``augment``  random-resized crop (area 0.85-1, aspect 3/4-4/3, bilinear) then rotation (±15°, nearest,
  fill 0) with pure torch affine grids; "twice" (faithful: crop→rotate→crop→rotate, applied with p = 0.5),
  "once", "none".
* ``train_snn_mlp``  Adam 1e-4, batch 64, MultiStepLR [50, 100] γ 0.1 per epoch, 100 epochs, seed 2. Keeps
  ``best.pt`` (best validation accuracy), ``last.pt`` (optimiser, scheduler and history: resumable to the same
  trajectory) and ``history.json``. Every random draw of epoch e (order, augmentation, dropout, input
  spikes) comes from generators keyed by (seed, e), so a resumed run repeats an uninterrupted one exactly.
* ``evaluate``  accuracy, per-class accuracy, confusion matrix, tie rate and spike counts per layer.
"""

from __future__ import annotations

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

from workbench.checkpoints import CheckpointError, load_checkpoint, load_for_resume, save_checkpoint
from workbench.checks import require_choice
from workbench.fileio import write_json
from workbench.models.snn_mlp import MODELS, SNNMLP, build_model, predict, spike_counts, tie_mask
from workbench.models.snn_layers import project_filters_

AUGMENTS = ("twice", "once", "none")
CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "data" / "checkpoints"
EVAL_SEEDS = (0, 1, 2)  # Bernoulli input: fixed encoding seeds for validation/test (spec §3.2, defect 11)
TRAIN_ENCODE_SALT = 7919  # training input spikes use seed·SALT + 1: never equal to an evaluation seed


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 [n, 784]
    labels: torch.Tensor  # int64 [n]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def mnist_splits(mnist: Any = None, *, smoke: bool = False, cache_dir: str | os.PathLike = Path("data/mnist"),
                 val_size: int = 10000) -> dict[str, Split]:
    """{"train", "val", "test"}: canonical 50k/10k/10k (``val_size`` taken from the end of the training set),
    or the 5k SMOKE subset. ``mnist`` is a ``workbench.data.mnist.Mnist`` (loaded from ``cache_dir`` if None)."""
    if mnist is None:
        from workbench.data.mnist import load_mnist

        mnist = load_mnist("auto", cache_dir=cache_dir, allow_subset=smoke)
    x, y = mnist.train_images, mnist.train_labels
    if smoke:
        first = [np.flatnonzero(y == c)[:500] for c in range(10)]
        if any(len(f) < 500 for f in first):
            raise ValueError("the SMOKE subset needs 500 training images of every class")
        pick = lambda a, b: np.sort(np.concatenate([f[a:b] for f in first]))  # noqa: E731
        tr, va, te = pick(0, 350), pick(350, 400), pick(400, 500)
        return {"train": _split(x[tr], y[tr]), "val": _split(x[va], y[va]), "test": _split(x[te], y[te])}
    if not 0 < val_size < len(y):
        raise ValueError(f"val_size must be in 1..{len(y) - 1}, got {val_size}")
    cut = len(y) - val_size
    return {"train": _split(x[:cut], y[:cut]), "val": _split(x[cut:], y[cut:]),
            "test": _split(mnist.test_images, mnist.test_labels)}


def offline_mnist(cache_dir: str | os.PathLike = Path("data/mnist")) -> Any:
    """MNIST from the local cache only (never the network); else the ``synthetic_digits`` stand-in.

    For SMOKE runs: CI may have neither network nor a cache. ``.source`` says which one was used."""
    from workbench.data.mnist import MnistUnavailableError, load_mnist, synthetic_digits

    try:
        return load_mnist("auto", cache_dir=cache_dir, download=False, allow_subset=True)
    except MnistUnavailableError:
        return synthetic_digits()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 bytes → float32 in [0, 1] (byte/255)."""
    return images.to(torch.float32) / 255.0


# ----------------------------------------------------------------------------------------------------
# Augmentation (pure torch affine grids)
# ----------------------------------------------------------------------------------------------------


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def random_resized_crop(images: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.85, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random box of area fraction ``scale`` and aspect ``ratio`` and resize it back (bilinear).

    ``images [B, 1, H, W]``. Boxes wider/taller than the image are clamped to it (torchvision retries)."""
    B = images.shape[0]
    area = _u(B, *scale, gen)
    aspect = torch.exp(_u(B, math.log(ratio[0]), math.log(ratio[1]), gen))
    fw = torch.sqrt(area * aspect).clamp(max=1.0)
    fh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * torch.rand(B, generator=gen) - 1) * (1 - fw)
    cy = (2 * torch.rand(B, generator=gen) - 1) * (1 - fh)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = fw, cx, fh, cy
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotation(images: torch.Tensor, gen: torch.Generator, degrees: float = 15.0) -> torch.Tensor:
    """Rotate each image by a uniform angle in ±``degrees`` about its centre (nearest, fill 0)."""
    B = images.shape[0]
    a = torch.deg2rad(_u(B, -degrees, degrees, gen))
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment(images: torch.Tensor, gen: torch.Generator, mode: str = "twice", p: float = 0.5) -> torch.Tensor:
    """Augment ``images [B, 784]`` in [0, 1]: with probability ``p`` per image, crop→rotate (twice by default)."""
    require_choice("augment", mode, AUGMENTS)
    if mode == "none" or images.shape[0] == 0:
        return images
    apply = torch.rand(images.shape[0], generator=gen) < p
    x = images.reshape(-1, 1, 28, 28)
    y = x
    for _ in range(2 if mode == "twice" else 1):
        y = random_rotation(random_resized_crop(y, gen), gen)
    out = torch.where(apply.to(images.device)[:, None, None, None], y, x)
    return out.reshape(images.shape)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """The faithful recipe of spec §3.3 (SMOKE: ``smoke_config()``)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    milestones: tuple[int, ...] = (50, 100)
    gamma: float = 0.1
    augment: str = "twice"
    seed: int = 2
    max_iters: int | None = None  # cap on iterations per epoch (SMOKE: 20)
    eval_batch: int = 1000
    val_limit: int | None = None  # score only the first n validation images each epoch (None: all)

    def __post_init__(self) -> None:
        require_choice("augment", self.augment, AUGMENTS)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


def smoke_config(**overrides: Any) -> TrainConfig:
    """SMOKE recipe: 1 epoch of 20 iterations (use with ``mnist_splits(smoke=True)``)."""
    return dataclasses.replace(TrainConfig(epochs=1, max_iters=20), **overrides)


@dataclass
class RunResult:
    """The files of a finished training run and its history (``best_epoch`` is in every history)."""

    best_path: Path
    last_path: Path
    history_path: Path
    history: dict[str, Any]

    @property
    def best_epoch(self) -> int:
        return int(self.history["best_epoch"])


def save_epoch(run: RunResult, model: torch.nn.Module, run_config: dict[str, Any], extra: dict[str, Any],
               optimiser: torch.optim.Optimizer, scheduler: Any, *, improved: bool) -> None:
    """End of an epoch: best.pt when it improved, last.pt with the optimiser and scheduler, history.json."""
    if improved:
        save_checkpoint(run.best_path, model, run_config, extra=extra)
    save_checkpoint(run.last_path, model, run_config, extra=extra,
                    train_state={"optimizer": optimiser.state_dict(), "scheduler": scheduler.state_dict()})
    write_json(run.history_path, {"config": run_config, **run.history})


@dataclass
class TrainResult(RunResult):
    @property
    def best_val_accuracy(self) -> float:
        return float(self.history["best_val_accuracy"])


def _epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + salt) % (2**63))


def _build(name: str, seed: int, overrides: dict[str, Any]) -> SNNMLP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build_model(name, **overrides)


def _progress(total: int, progress: bool, desc: str, unit: str = "it"):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, desc=desc, unit=unit, disable=not (progress and interactive), leave=False)


def _new_history() -> dict[str, Any]:
    return {"train_loss": [], "train_accuracy": [], "val_accuracy": [], "val_tie_rate": [], "lr": [],
            "max_pole_modulus": [], "epoch_seconds": [], "best_epoch": -1, "best_val_accuracy": -1.0,
            "seconds": 0.0}


def train_epoch(model: SNNMLP, optimiser: torch.optim.Optimizer, split: Split, config: TrainConfig, epoch: int,
                *, device: torch.device | str = "cpu", progress: bool = False) -> tuple[float, float]:
    """One epoch (shuffled, augmented, dropout); returns (mean loss, train accuracy on the augmented batches)."""
    gen = _epoch_generator(config.seed, epoch)
    n = len(split)
    order = torch.randperm(n, generator=gen)
    batches = list(order.split(config.batch_size))
    if config.max_iters is not None:
        batches = batches[: config.max_iters]
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = _progress(len(batches), progress, f"epoch {epoch}")
    try:
        for idx in batches:
            images = augment(to_float(split.images[idx]), gen, config.augment)
            x = model.encode(images, seed=config.seed * TRAIN_ENCODE_SALT + 1, image_ids=idx,
                             step_offset=epoch * model.T).to(device)
            labels = split.labels[idx].to(device)
            counts = spike_counts(model(x, generator=gen))
            loss = F.cross_entropy(counts, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            project_filters_(model)
            total_loss += float(loss.detach()) * len(idx)
            correct += int((predict(counts.detach()) == labels).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            bar.update(1)
    finally:
        bar.close()
    return total_loss / max(seen, 1), correct / max(seen, 1)


def train_snn_mlp(name: str, splits: dict[str, Split], out_dir: str | os.PathLike, config: TrainConfig | None = None,
                  *, resume: bool = False, device: str | torch.device = "cpu", progress: bool = True,
                  model_overrides: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = None) -> TrainResult:
    """Train model ``name`` (``MODELS``) and checkpoint into ``out_dir`` (best.pt, last.pt, history.json).

    ``resume=True`` continues from ``out_dir/last.pt`` (same model, config and seed) and follows the same
    trajectory as an uninterrupted run. ``log`` receives one line per epoch."""
    config = config or TrainConfig()
    overrides = dict(model_overrides or {})
    dev = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    best_path, last_path, history_path = out / "best.pt", out / "last.pt", out / "history.json"
    model = _build(name, config.seed, overrides).to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=list(config.milestones), gamma=config.gamma)
    run_config = {"model": "SNNMLP", "name": name, "kwargs": model.config_kwargs(), "training": config.to_dict(),
                  "train_size": len(splits["train"]), "val_size": len(splits["val"])}
    history = _new_history()
    if resume and last_path.exists():
        last = load_for_resume(last_path, run_config, may_change=["training.epochs"])
        model.load_state_dict(last.state_dict)
        optimiser.load_state_dict(last.train_state["optimizer"])
        scheduler.load_state_dict(last.train_state["scheduler"])
        history = last.extra["history"]
    start_epoch = len(history["train_loss"])
    val = splits["val"]
    if config.val_limit is not None:
        val = Split(val.images[: config.val_limit], val.labels[: config.val_limit])
    bar = _progress(config.epochs, progress, f"train {name}", unit="epoch")
    bar.update(min(start_epoch, config.epochs))
    try:
        for epoch in range(start_epoch, config.epochs):
            clock = time.perf_counter()
            lr = float(optimiser.param_groups[0]["lr"])
            loss, train_acc = train_epoch(model, optimiser, splits["train"], config, epoch, device=dev,
                                          progress=progress)
            scheduler.step()
            scores = evaluate(model, val, batch_size=config.eval_batch, seeds=EVAL_SEEDS[:1], device=dev,
                              with_layers=False)
            pole = model.max_pole_modulus()
            if pole >= 1.0:
                warnings.warn(f"epoch {epoch}: an IIR filter pole has modulus {pole:.4f} >= 1 (unstable)")
            seconds = time.perf_counter() - clock
            for key, value in (("train_loss", loss), ("train_accuracy", train_acc),
                               ("val_accuracy", scores["accuracy"]), ("val_tie_rate", scores["tie_rate"]),
                               ("lr", lr), ("max_pole_modulus", pole), ("epoch_seconds", round(seconds, 3))):
                history[key].append(value)
            history["seconds"] = round(history["seconds"] + seconds, 3)
            improved = scores["accuracy"] > history["best_val_accuracy"]
            if improved:
                history["best_epoch"], history["best_val_accuracy"] = epoch, scores["accuracy"]
            extra = {"epoch": epoch, "val_accuracy": scores["accuracy"], "best_epoch": history["best_epoch"],
                     "best_val_accuracy": history["best_val_accuracy"], "torch": torch.__version__,
                     "history": history}
            save_epoch(RunResult(best_path, last_path, history_path, history), model, run_config, extra,
                       optimiser, scheduler, improved=improved)
            if log is not None:
                log(f"epoch {epoch}: loss {loss:.4f} train acc {train_acc:.4f} val acc {scores['accuracy']:.4f} "
                    f"ties {scores['tie_rate']:.3f} max|pole| {pole:.4f} lr {lr:g} {seconds:.1f}s"
                    f"{' *' if improved else ''}")
            bar.update(1)
    finally:
        bar.close()
    return TrainResult(best_path, last_path, history_path, history)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------


def load_snn_mlp(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> SNNMLP:
    """Rebuild an ``SNNMLP`` from a checkpoint written by ``train_snn_mlp`` (eval mode)."""
    ckpt = load_checkpoint(path)
    if ckpt.config.get("model") != "SNNMLP":
        raise CheckpointError(f"{path} holds a {ckpt.config.get('model')!r}, not an SNNMLP; train one with "
                              "`hnnwb snn-iir train --model mlp1 --out DIR`")
    model = SNNMLP(**ckpt.config["kwargs"])
    model.load_state_dict(ckpt.state_dict)
    return model.to(device).eval()


def shipped_checkpoint(name: str) -> Path:
    """``data/checkpoints/snn_iir_<name>.pt`` (may not exist)."""
    require_choice("model", name, tuple(MODELS))
    return CHECKPOINT_DIR / f"snn_iir_{name}.pt"


@torch.no_grad()
def run_outputs(model: SNNMLP, images: torch.Tensor, *, seed: int = 0, image_ids: torch.Tensor | None = None,
                device: str | torch.device = "cpu") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Eval-mode output spikes ``[T, B, 10]`` and every layer's spikes for float ``images [B, 784]``."""
    model.eval()
    x = model.encode(images, seed=seed, image_ids=image_ids).to(device)
    out, layers, _ = _forward_layers(model, x)
    return out, layers


def _forward_layers(model: SNNMLP, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], None]:
    layers, h = [], x
    for layer in model.layers:
        h = layer(h)
        layers.append(h)
    return h, layers, None


@torch.no_grad()
def evaluate(model: SNNMLP, split: Split, *, batch_size: int = 1000, seeds: Sequence[int] = EVAL_SEEDS,
             device: str | torch.device = "cpu", with_layers: bool = True, progress: bool = False) -> dict[str, Any]:
    """Score ``model`` on every image of ``split`` in order (no drop_last).

    Returns accuracy, per-class accuracy, confusion matrix [true, predicted], tie rate and, with
    ``with_layers``, mean spikes per image per layer and firing probability per neuron and step. Bernoulli
    models are scored once per encoding seed in ``seeds``: the top-level numbers are the mean, with
    ``accuracy_sd`` and ``per_seed``. Analog models use one pass."""
    model.eval()
    seeds = list(seeds)[:1] if model.input == "analog" else list(seeds)
    runs = []
    n = len(split)
    for seed in seeds:
        confusion = torch.zeros(10, 10, dtype=torch.int64)
        ties, layer_spikes = 0, torch.zeros(len(model.layers), dtype=torch.float64)
        bar = _progress(math.ceil(n / batch_size), progress, "evaluate")
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            x = model.encode(to_float(split.images[idx]), seed=seed, image_ids=idx).to(device)
            out, layers, _ = _forward_layers(model, x)
            counts = spike_counts(out).cpu()
            pred = predict(counts)
            confusion += torch.bincount(split.labels[idx] * 10 + pred, minlength=100).reshape(10, 10)
            ties += int(tie_mask(counts).sum())
            if with_layers:
                layer_spikes += torch.tensor([float(s.sum()) for s in layers], dtype=torch.float64)
            bar.update(1)
        bar.close()
        correct = confusion.diag()
        per_class = (correct.double() / confusion.sum(1).clamp(min=1).double()).tolist()
        run = {"seed": seed, "accuracy": float(correct.sum()) / max(n, 1), "per_class_accuracy": per_class,
               "confusion": confusion.tolist(), "tie_rate": ties / max(n, 1)}
        if with_layers:
            per_image = (layer_spikes / max(n, 1)).tolist()
            run["spikes_per_image"] = {f"layer{i + 1}": v for i, v in enumerate(per_image)}
            run["firing_probability"] = {f"layer{i + 1}": v / (model.T * layer.out_features)
                                         for i, (v, layer) in enumerate(zip(per_image, model.layers))}
        runs.append(run)
    result = dict(runs[0])
    result["n_images"] = n
    result["input"] = model.input
    if len(runs) > 1:
        accs = np.array([r["accuracy"] for r in runs])
        result["accuracy"] = float(accs.mean())
        result["accuracy_sd"] = float(accs.std(ddof=1))
        result["per_seed"] = [{"seed": r["seed"], "accuracy": r["accuracy"], "tie_rate": r["tie_rate"]} for r in runs]
        result["tie_rate"] = float(np.mean([r["tie_rate"] for r in runs]))
        result["per_class_accuracy"] = np.mean([r["per_class_accuracy"] for r in runs], axis=0).tolist()
        del result["seed"]
    return result


def evaluate_checkpoint(name: str, checkpoint: str | os.PathLike | None = None, *, splits: dict[str, Split] | None = None,
                        split: str = "test", batch_size: int = 1000, device: str | torch.device = "cpu",
                        progress: bool = False, smoke: bool = False,
                        cache_dir: str | os.PathLike = Path("data/mnist")) -> dict[str, Any]:
    """``evaluate`` a checkpoint (default: the shipped one for ``name``) on a split (default: all 10,000 test images)."""
    path = Path(checkpoint) if checkpoint is not None else shipped_checkpoint(name)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `hnnwb snn-iir train --model {name} "
                                f"--out runs/snn_iir/{name}` and pass --checkpoint runs/snn_iir/{name}/best.pt")
    model = load_snn_mlp(path, device=device)
    splits = splits if splits is not None else mnist_splits(smoke=smoke, cache_dir=cache_dir)
    clock = time.perf_counter()
    result = evaluate(model, splits[split], batch_size=batch_size, device=device, progress=progress)
    ckpt = load_checkpoint(path)
    result.update({"model": name, "checkpoint": str(path), "split": split, "seconds": round(time.perf_counter() - clock, 3),
                   "epoch": ckpt.extra.get("epoch"), "val_accuracy": ckpt.extra.get("val_accuracy"),
                   "max_pole_modulus": model.max_pole_modulus()})
    return result


# ----------------------------------------------------------------------------------------------------
# Views' data (notebooks 07/08)
# ----------------------------------------------------------------------------------------------------


def filter_coefficients(model: SNNMLP) -> list[dict[str, np.ndarray]]:
    """Per layer, the current filter coefficients as numpy arrays (names as in the module)."""
    return [{k: v.detach().cpu().numpy().copy() for k, v in layer.psp.named_parameters()} for layer in model.layers]


def coefficient_drift(model: SNNMLP) -> list[dict[str, Any]]:
    """Per layer and coefficient: initial value (from τ) and the trained values' mean, sd, min, max."""
    fresh = SNNMLP(**model.config_kwargs())
    rows = []
    for i, (now, init) in enumerate(zip(filter_coefficients(model), filter_coefficients(fresh))):
        for key, values in now.items():
            rows.append({"layer": i + 1, "coefficient": key, "initial": float(init[key][0]),
                         "mean": float(values.mean()), "sd": float(values.std()), "min": float(values.min()),
                         "max": float(values.max()), "values": values})
    return rows


def class_examples(split: Split, per_class: int = 1) -> torch.Tensor:
    """Indices of the first ``per_class`` images of each digit, ordered by class."""
    idx = [torch.nonzero(split.labels == c).flatten()[:per_class] for c in range(10)]
    return torch.cat(idx)


# ----------------------------------------------------------------------------------------------------
# Oracles (spec §2.6), computed by our own filters and neuron
# ----------------------------------------------------------------------------------------------------


def oracle_table(T: int = 300) -> dict[str, list[dict[str, Any]]]:
    """The §2 oracle values as our implementation computes them (float64): filter coefficients, impulse and
    step responses, neuron spike trains under constant input, surrogate values."""
    from workbench.neurons.iir import (DualExpIIRParams, IIRNeuronParams, LowPassParams, TwoStateParams,
                                       dual_exp_iir_impulse, iir_neuron_run, low_pass_impulse, two_state_impulse)
    from workbench.neurons.surrogate import surrogate

    d = torch.float64
    kernels = {
        "IIR 4/1": dual_exp_iir_impulse(DualExpIIRParams(4, 1).coefficients((), d), T),
        "IIR 8/2": dual_exp_iir_impulse(DualExpIIRParams(8, 2).coefficients((), d), T),
        "IIR 4/1 normalised": dual_exp_iir_impulse(DualExpIIRParams(4, 1, normalise=True).coefficients((), d), T),
        "two-state 4/1": two_state_impulse(TwoStateParams(4, 1).coefficients((), d), T),
        "two-state 8/2": two_state_impulse(TwoStateParams(8, 2).coefficients((), d), T),
        "low-pass 4": low_pass_impulse(torch.tensor(LowPassParams(4).alpha, dtype=d), T),
    }
    filters = []
    for name, h in kernels.items():
        step = torch.cumsum(h, 0)
        filters.append({"filter": name, "h": h[:8].tolist(), "peak": float(h.max()), "peak_k": int(h.argmax()),
                        "dc_gain": float(h.sum()), "step": [float(step[t]) for t in (0, 1, 2, 4, 9, 24, 49) if t < T],
                        "energy": float((h * h).sum())})
    coefficients = []
    for tm, ts in ((4, 1), (8, 2)):
        p = DualExpIIRParams(tm, ts)
        c = p.coefficients((), d)
        coefficients.append({"tau_m": tm, "tau_s": ts, "dm": p.dm, "ds": p.ds, "alpha_1": float(c.alpha_1),
                             "alpha_2": float(c.alpha_2), "beta_1": float(c.beta_1), "v0": p.v0,
                             "peak_time": p.continuous_peak_time})
    neuron = []
    for current, membrane in ((0.9, False), (1.0, False), (1.01, False), (1.5, False), (2.0, False), (3.0, False),
                              (5.0, False), (0.3, True), (0.5, True), (1.0, True)):
        spikes, _ = iir_neuron_run(torch.full((30, 1), current, dtype=d), IIRNeuronParams(membrane_filter=membrane))
        train = "".join(str(int(s)) for s in spikes[:, 0].tolist())
        neuron.append({"I": current, "membrane_filter": membrane, "spikes": train.count("1"), "train": train})
    fn = surrogate("gaussian", sigma=0.4)
    surr = [{"v": v, "g": float(fn.grad(torch.tensor(v - 1.0, dtype=d)))} for v in (1.0, 0.5, 1.5, 0.0, 2.0, -1.0)]
    return {"filters": filters, "coefficients": coefficients, "neuron": neuron, "surrogate": surr}


def filter_responses(T: int = 40) -> dict[str, dict[str, np.ndarray]]:
    """Impulse and step responses (float64, length T) of the SNN-IIR filters at their reference constants."""
    from workbench.neurons.iir import (DualExpIIRParams, LowPassParams, TwoStateParams, dual_exp_iir_impulse,
                                       low_pass_impulse, two_state_impulse)

    d = torch.float64
    kernels = {
        "dual-exp IIR 4/1 (mlp1)": dual_exp_iir_impulse(DualExpIIRParams(4, 1).coefficients((), d), T),
        "dual-exp IIR 4/1 normalised": dual_exp_iir_impulse(DualExpIIRParams(4, 1, normalise=True).coefficients((), d), T),
        "dual-exp IIR 8/2 (memory)": dual_exp_iir_impulse(DualExpIIRParams(8, 2).coefficients((), d), T),
        "two-state 8/2 (read-out)": two_state_impulse(TwoStateParams(8, 2).coefficients((), d), T),
        "low-pass τ=4 (mlp2)": low_pass_impulse(torch.tensor(LowPassParams(4).alpha, dtype=d), T),
    }
    return {k: {"impulse": h.numpy(), "step": torch.cumsum(h, 0).numpy()} for k, h in kernels.items()}


def layer_response(x: np.ndarray | torch.Tensor, *, psp: str = "dual_exp", weight: float = 1.0, bias: float = 0.0,
                   membrane_filter: bool = False, tau_m: float = 4.0, tau_s: float = 1.0) -> dict[str, np.ndarray]:
    """One input channel → filter → w·ψ + b → IIR neuron: returns input, psp, current, v, r, spikes (length T)."""
    from workbench.models.snn_layers import IIRDense

    layer = IIRDense(1, 1, psp=psp, tau_m=tau_m, tau_s=tau_s, membrane_filter=membrane_filter)
    with torch.no_grad():
        layer.linear.weight.fill_(float(weight))
        layer.linear.bias.fill_(float(bias))
        seq = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 1)
        spikes, rec = layer(seq, record=True)
    flat = lambda t: t.reshape(-1).numpy().copy()  # noqa: E731
    return {"input": flat(seq), "psp": flat(rec.psp), "current": flat(rec.psp) * weight + bias, "v": flat(rec.v),
            "r": flat(rec.r), "spikes": flat(spikes)}


@torch.no_grad()
def class_rasters(model: SNNMLP, split: Split, per_class: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Output spikes ``[n, T, 10]`` for the first ``per_class`` images of each digit, with labels and predictions."""
    idx = class_examples(split, per_class)
    out, _ = run_outputs(model, to_float(split.images[idx]), seed=seed, image_ids=idx)
    spikes = out.permute(1, 0, 2).cpu().numpy()
    return {"index": idx.numpy(), "labels": split.labels[idx].numpy(), "spikes": spikes,
            "predicted": predict(out.sum(0).cpu()).numpy(), "images": split.images[idx].numpy()}
