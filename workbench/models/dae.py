"""MLP denoising autoencoder (DASBE's "bae", spec §2.5) and its training recipe (spec §5).

Layers: Linear stacks; ReLU on inner encoder and decoder layers, the code activation (default Sigmoid)
on the last encoder layer, Sigmoid on the output. ``forward`` returns ``(reconstruction, hidden code)``
and is deterministic; nothing spikes inside the DAE.

The authors' published weights are plain one-hidden-layer state dicts (``encoder.weight``,
``encoder.bias``, ``decoder.weight``, ``decoder.bias``); ``MLPDAE.from_state_dict`` reads that layout as
well as our own.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from workbench.checks import require_finite_weights

_CODE_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu}
# Spec §5: rate multipliers applied after these epoch indices (0.01 -> 0.005 -> ... -> 6.25e-5).
DASBE_LR_STEPS: tuple[tuple[int, float], ...] = ((60, 0.5), (100, 0.5), (130, 0.5), (150, 0.5), (170, 0.1))


class MLPDAE(nn.Module):
    """``sizes = (in, ..., code, ..., out)``; the code layer is the middle entry (odd length >= 3).

    Example: ``MLPDAE((784, 512, 400, 512, 784), hidden_act="sigmoid")`` is the Shapes DAE.
    """

    def __init__(self, sizes: Sequence[int] = (400, 256, 400), hidden_act: str = "sigmoid",
                 seed: int | None = None) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 3 or len(sizes) % 2 == 0 or min(sizes) < 1:
            raise ValueError(f"sizes must have odd length >= 3 with positive entries (code layer in the "
                             f"middle), got {sizes}")
        if hidden_act not in _CODE_ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(_CODE_ACTIVATIONS)}, got {hidden_act!r}")
        self.sizes = sizes
        self.hidden_act = hidden_act
        middle = len(sizes) // 2
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:middle], sizes[1:middle + 1]))
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[middle:-1], sizes[middle + 1:]))

    def config_kwargs(self) -> dict:
        """Constructor arguments that rebuild this architecture (stored in checkpoints)."""
        return {"sizes": list(self.sizes), "hidden_act": self.hidden_act}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder[:-1]:
            x = torch.relu(layer(x))
        return _CODE_ACTIVATIONS[self.hidden_act](self.encoder[-1](x))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.decoder[:-1]:
            h = torch.relu(layer(h))
        return torch.sigmoid(self.decoder[-1](h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encode(x)
        return self.decode(hidden), hidden

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], hidden_act: str = "sigmoid") -> "MLPDAE":
        """Build a DAE from our layout (``encoder.0.weight`` ...) or the authors' plain one (``encoder.weight`` ...).

        Sizes are read from the weight shapes. Unknown keys, inconsistent shapes and non-finite weights
        raise ``ValueError`` naming the offending entry.
        """
        state = _to_our_layout(dict(state_dict))
        sizes = _sizes_from_state(state)
        model = cls(sizes, hidden_act=hidden_act)
        expected = model.state_dict()
        if set(state) != set(expected):
            raise ValueError(f"state dict keys {sorted(set(state) ^ set(expected))} do not fit a DAE of sizes "
                             f"{sizes} (layer indices must run 0, 1, ... without gaps)")
        for key, value in state.items():
            if tuple(value.shape) != tuple(expected[key].shape):
                raise ValueError(f"state dict entry {key!r} has shape {tuple(value.shape)}, expected "
                                 f"{tuple(expected[key].shape)} for sizes {sizes}")
        require_finite_weights(state.items(), "the DAE state dict")
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        return model


def _to_our_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    plain = {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
    if set(state) == plain:  # the authors' one-hidden-layer layout
        return {k.replace(".", ".0.", 1): v for k, v in state.items()}
    for key in state:
        parts = key.split(".")
        if len(parts) != 3 or parts[0] not in ("encoder", "decoder") or not parts[1].isdigit() \
                or parts[2] not in ("weight", "bias"):
            raise ValueError(f"unknown state dict key {key!r}; expected 'encoder.<i>.weight'/'bias', "
                             f"'decoder.<i>.weight'/'bias', or the plain {sorted(plain)}")
    return state


def _sizes_from_state(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    weights = {}
    for part in ("encoder", "decoder"):
        i = 0
        while f"{part}.{i}.weight" in state:
            weights.setdefault(part, []).append(state[f"{part}.{i}.weight"])
            i += 1
        if not weights.get(part):
            raise ValueError(f"state dict has no {part}.0.weight")
    layers = weights["encoder"] + weights["decoder"]
    if len(weights["encoder"]) != len(weights["decoder"]):
        raise ValueError(f"{len(weights['encoder'])} encoder vs {len(weights['decoder'])} decoder layers; "
                         "the code layer must sit in the middle")
    if any(w.dim() != 2 for w in layers):
        raise ValueError("every weight must be a 2-D [out, in] matrix")
    sizes = [int(layers[0].shape[1])] + [int(w.shape[0]) for w in layers]
    for i, w in enumerate(layers[1:], start=1):
        if int(w.shape[1]) != sizes[i]:
            raise ValueError(f"layer {i} expects {int(w.shape[1])} inputs but layer {i - 1} gives {sizes[i]}")
    return tuple(sizes)


# --- training (spec §5) -------------------------------------------------------------------------


@dataclass
class TrainHistory:
    """Per-epoch losses of a training run; ``best_epoch`` is the epoch whose weights the model keeps.

    ``lr`` is the learning rate each epoch ran with; ``seconds`` is the training time summed over resumed
    runs. ``to_dict``/``from_dict`` give a JSON-ready form (used by checkpoints and ``history.json``).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    lr: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict:
        return {"train_loss": list(self.train_loss), "val_loss": list(self.val_loss), "lr": list(self.lr),
                "best_epoch": self.best_epoch, "best_val_loss": _json_float(self.best_val_loss),
                "stopped_early": self.stopped_early, "seconds": self.seconds, "epochs": self.epochs}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainHistory":
        best = d.get("best_val_loss")
        return cls(train_loss=[_float(v) for v in d["train_loss"]], val_loss=[_float(v) for v in d["val_loss"]],
                   best_epoch=int(d["best_epoch"]), best_val_loss=math.inf if best is None else float(best),
                   stopped_early=bool(d.get("stopped_early", False)), seconds=float(d.get("seconds", 0.0)),
                   lr=[float(v) for v in d.get("lr", [])])


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass
class EpochEnd:
    """What an ``on_epoch`` callback sees after each epoch (the learning-rate step is already applied,
    so ``optimiser.state_dict()`` is exactly what a resumed run needs)."""

    epoch: int
    train_loss: float
    val_loss: float
    improved: bool
    history: TrainHistory
    model: nn.Module
    optimiser: torch.optim.Optimizer


EpochCallback = Callable[[EpochEnd], None]


def fit_epochs(model: nn.Module, optimiser: torch.optim.Optimizer, train_epoch: Callable[[int], float],
               validate: Callable[[], float], *, epochs: int, patience: int,
               lr_steps: Sequence[tuple[int, float]] = DASBE_LR_STEPS, progress: bool = True,
               history: TrainHistory | None = None, best_state: Mapping[str, torch.Tensor] | None = None,
               on_epoch: EpochCallback | None = None, desc: str = "train DAE") -> TrainHistory:
    """The epoch loop shared by every DAE recipe (spec §5): train, validate, keep the best, step the rate.

    ``train_epoch(epoch)`` runs one epoch and returns its mean training loss; ``validate()`` returns the
    validation score (lower is better). After each epoch the rate multipliers of ``lr_steps`` whose epoch
    index matches are applied; training stops when more than ``patience`` epochs pass without an
    improvement. To resume, pass the saved ``history`` (its length is the next epoch) and ``best_state``
    with the optimiser (and any generator) already restored. The model ends holding the best weights.
    """
    history = history if history is not None else TrainHistory()
    best_state = copy.deepcopy(dict(best_state if best_state is not None else model.state_dict()))
    prior_seconds, start = history.seconds, time.perf_counter()
    bar = _progress_bar(epochs, progress, desc=desc, initial=min(history.epochs, epochs))
    try:
        for epoch in range(history.epochs, epochs):
            if history.stopped_early:
                break
            lr = float(optimiser.param_groups[0]["lr"])
            train_loss = float(train_epoch(epoch))
            val_loss = float(validate())
            history.train_loss.append(train_loss)
            history.val_loss.append(val_loss)
            history.lr.append(lr)
            improved = val_loss < history.best_val_loss
            if improved:
                history.best_val_loss, history.best_epoch = val_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
            _apply_lr_steps(optimiser, epoch, lr_steps)
            history.stopped_early = epoch - history.best_epoch > patience
            history.seconds = prior_seconds + time.perf_counter() - start
            if on_epoch is not None:
                on_epoch(EpochEnd(epoch, train_loss, val_loss, improved, history, model, optimiser))
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=history.best_epoch)
            bar.update(1)
    finally:
        bar.close()
    model.load_state_dict(best_state)
    return history


def train_dae(model: nn.Module, images: torch.Tensor, *, epochs: int = 300, batch_size: int = 1024,
              lr: float = 0.01, dropout: tuple[float, float] | float = (0.6, 0.8), val_fraction: float = 0.1,
              seed: int = 0, patience: int = 40,
              lr_steps: Sequence[tuple[int, float]] = DASBE_LR_STEPS, progress: bool = True,
              on_epoch: EpochCallback | None = None) -> TrainHistory:
    """Train ``model`` as a denoising autoencoder on single-object ``images [n, N]`` (0/1 floats), in place.

    Recipe (spec §5): the last ``val_fraction`` of the images (no shuffling before the split) validates with
    clean input; training batches are reshuffled every epoch and see pixel dropout ``x * (U >= p)`` with
    ``p ~ U(dropout)`` drawn once per batch (a float means a fixed p); target is the clean image; BCE (mean);
    Adam; rate multipliers applied after the epochs in ``lr_steps``. Stops when more than ``patience``
    epochs pass without a validation improvement, and loads the best-validation weights before returning.
    ``on_epoch`` is called after every epoch (e.g. to write checkpoints; see ``fit_epochs``).
    ``workbench.models.presets.train_preset`` runs this recipe from a dataset file with checkpoints and resume.
    """
    x = _check_images(images, model)
    train, val = split_train_val(x, val_fraction)
    low, high = dropout_range(dropout)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    return fit_epochs(model, optimiser,
                      lambda epoch: _train_epoch(model, train, optimiser, batch_size, low, high, gen),
                      lambda: _validation_score(model, val, batch_size),
                      epochs=epochs, patience=patience, lr_steps=lr_steps, progress=progress, on_epoch=on_epoch)


def split_train_val(x: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``1 - val_fraction`` for training, the rest for validation, in file order (no shuffling; spec §5)."""
    n_val = int(round(len(x) * val_fraction))
    if not 0 < n_val < len(x):
        raise ValueError(f"val_fraction={val_fraction} leaves {len(x) - n_val} training and {n_val} "
                         f"validation images out of {len(x)}; both must be non-empty")
    return x[: len(x) - n_val], x[len(x) - n_val:]


def dropout_range(dropout: tuple[float, float] | float) -> tuple[float, float]:
    """``(low, high)`` of the per-batch pixel-dropout probability; a single number means a fixed p."""
    low, high = (dropout, dropout) if isinstance(dropout, (int, float)) else tuple(dropout)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"dropout must be p or (low, high) with 0 <= low <= high <= 1, got {dropout!r}")
    return float(low), float(high)


def _check_images(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.dim() != 2:
        raise ValueError(f"images must be [n, N] (flattened), got shape {tuple(x.shape)}; use images.reshape(n, -1)")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("images must lie in [0, 1] (binary 0/1 for the DASBE datasets)")
    param = next(model.parameters())
    return x.to(device=param.device, dtype=param.dtype)


def _train_epoch(model: nn.Module, train: torch.Tensor, optimiser: torch.optim.Optimizer, batch_size: int,
                 low: float, high: float, gen: torch.Generator) -> float:
    model.train()
    order = torch.randperm(len(train), generator=gen).to(train.device)
    total, count = 0.0, 0
    for start in range(0, len(train), batch_size):
        clean = train[order[start:start + batch_size]]
        p = low + (high - low) * float(torch.rand((), generator=gen))
        keep = (torch.rand(clean.shape, generator=gen) >= p).to(clean.device, clean.dtype)
        recon = _reconstruction(model(clean * keep))
        loss = F.binary_cross_entropy(recon, clean)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total, count = total + float(loss.detach()) * len(clean), count + len(clean)
    return total / count


@torch.no_grad()
def _validation_score(model: nn.Module, val: torch.Tensor, batch_size: int) -> float:
    """Sum over validation batches of the mean BCE with clean input (the authors' score, spec §5)."""
    model.eval()
    return sum(float(F.binary_cross_entropy(_reconstruction(model(val[i:i + batch_size])), val[i:i + batch_size]))
               for i in range(0, len(val), batch_size))


def _reconstruction(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _apply_lr_steps(optimiser: torch.optim.Optimizer, epoch: int, lr_steps: Sequence[tuple[int, float]]) -> None:
    for after_epoch, factor in lr_steps:
        if epoch == after_epoch:
            for group in optimiser.param_groups:
                group["lr"] *= factor


def _progress_bar(total: int, progress: bool, desc: str = "train DAE", initial: int = 0):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", disable=not (progress and interactive),
                leave=False)
