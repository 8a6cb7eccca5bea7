"""Model checkpoints: a state dict plus a JSON config, saved atomically, loaded without unpickling code.

One ``.pt`` file holds a plain dict that ``torch.load(..., weights_only=True)`` reads::

    {"format": "hnnwb.checkpoint", "version": 1,
     "state_dict": {name: tensor},
     "config": '<JSON: {"preset": ..., "model": ..., "kwargs": {...}, ...}>',
     "extra":  '<JSON: epoch, val loss, history summary, ...>',
     "train_state": {"optimizer": ..., "rng": ..., ...}}   # only in last.pt (what a resumed run needs)

``config`` and ``extra`` are JSON text, so nothing but tensors, numbers and strings is stored. The
optimiser state holds tensors, so it lives in ``train_state`` rather than in the JSON ``extra``.
``load_dae`` rebuilds the model from ``config["model"]`` and ``config["kwargs"]`` and also accepts the
authors' plain one-hidden-layer state dicts (``encoder.weight`` ...), which become an ``MLPDAE``. Files
holding pickled Python objects (such as the authors' original whole-module checkpoints) are refused.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from workbench.checks import require_finite_weights
from workbench.fileio import atomic_path

__all__ = ["FORMAT", "VERSION", "Checkpoint", "CheckpointError", "CheckpointNotFoundError", "save_checkpoint",
           "load_checkpoint", "load_for_resume", "load_dae", "model_config"]

FORMAT = "hnnwb.checkpoint"
VERSION = 1
TRAIN_COMMAND = ("`hnnwb dasbe train --preset <preset> --data <dataset.h5> --out <dir>` or "
                 "`python -m workbench.models.presets <preset> --data <dataset.h5> --out <dir>` "
                 "(both write <dir>/best.pt and <dir>/last.pt)")


class CheckpointError(ValueError):
    """A file is not a usable checkpoint (wrong format, unknown model, mismatched or non-finite weights)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``config``/``extra`` are the decoded JSON; ``train_state`` is None except in last.pt."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    path: Path | None = None


def model_config(model: nn.Module, preset: str | None = None, **more: Any) -> dict[str, Any]:
    """The config ``load_dae`` needs: ``{"preset", "model": class name, "kwargs": constructor kwargs, ...}``.

    Works for the workbench's DAE classes, which expose their constructor arguments as ``config_kwargs()``.
    """
    if not hasattr(model, "config_kwargs"):
        raise CheckpointError(f"{type(model).__name__} has no config_kwargs(); pass the config dict yourself")
    return {"preset": preset, "model": type(model).__name__, "kwargs": model.config_kwargs(), **more}


def save_checkpoint(path: str | os.PathLike, model: nn.Module | Mapping[str, torch.Tensor], config: Mapping[str, Any],
                    *, extra: Mapping[str, Any] | None = None,
                    train_state: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights (or a state dict) with ``config`` and ``extra`` atomically; returns the path.

    ``config`` and ``extra`` must be JSON-serialisable (numbers, strings, lists, dicts). ``train_state``
    (optimiser state dict, generator state, ...) may hold tensors and is meant for last.pt only.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {k: v.detach().to("cpu").clone() for k, v in state.items()},
        "config": _dumps("config", config),
        "extra": _dumps("extra", extra or {}),
    }
    if train_state is not None:
        payload["train_state"] = _to_cpu(dict(train_state))
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, *, check_finite: bool = True) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` with ``torch.load(weights_only=True)``.

    Raises ``CheckpointNotFoundError`` for a missing file and ``CheckpointError`` for anything that is not
    one of our checkpoints (use ``load_dae`` for the authors' plain state dicts), or, with ``check_finite``,
    for NaN/inf weights.
    """
    path = Path(path)
    obj = _torch_load(path)
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        raise CheckpointError(f"{path} is not an hnnwb checkpoint (no 'format': {FORMAT!r} entry); "
                              "plain state dicts load with workbench.checkpoints.load_dae")
    if not isinstance(obj.get("version"), int) or obj["version"] > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')!r}; this workbench reads "
                              f"versions <= {VERSION}. Update the workbench.")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' must map names to tensors")
    if check_finite:
        require_finite_weights(state.items(), str(path), CheckpointError)
    return Checkpoint(state_dict=dict(state), config=_loads(path, "config", obj.get("config")),
                      extra=_loads(path, "extra", obj.get("extra", "{}")), train_state=obj.get("train_state"),
                      path=path)


def load_for_resume(path: str | os.PathLike, config: Mapping[str, Any], *,
                    may_change: Sequence[str] = ()) -> Checkpoint:
    """The ``last.pt`` of a run to continue: it must hold training state and the same run ``config``.

    ``may_change`` names ``"section.key"`` entries that a resumed run may set differently (e.g.
    ``"training.epochs"``: train longer). A mismatch raises ``CheckpointError`` naming the differing keys.
    """
    last = load_checkpoint(path)
    diff = _config_diff(dict(last.config), dict(config), set(may_change))
    if diff:
        raise CheckpointError(f"{path} belongs to a different run (differs in {diff}); drop --resume "
                              "(resume=False) to start afresh, or use another output folder")
    if last.train_state is None:
        raise CheckpointError(f"{path} has no training state to resume from")
    return last


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any], may_change: set[str], prefix: str = "") -> list[str]:
    diff = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diff += _config_diff(a, b, may_change, f"{name}.")
        elif a != b and name not in may_change:
            diff.append(name)
    return diff


def load_dae(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a DAE from one of our checkpoints, or from a plain state dict (the authors' layout
    ``encoder.weight``/``encoder.bias``/``decoder.weight``/``decoder.bias``, or ours ``encoder.0.weight`` ...),
    which becomes an ``MLPDAE`` with sigmoid code. Returns the module in eval mode on ``device``.
    """
    path = Path(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and "format" not in obj:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            from workbench.models.dae import MLPDAE

            try:
                model = MLPDAE.from_state_dict(obj)
            except ValueError as exc:
                raise CheckpointError(f"{path} is a plain state dict but not a DAE one: {exc}") from exc
            return model.to(device).eval()
        raise CheckpointError(f"{path} is neither an hnnwb checkpoint nor a plain state dict of tensors "
                              f"(keys: {sorted(map(str, obj))[:8]})")
    ckpt = load_checkpoint(path)
    model = _build(ckpt.config, path)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(ckpt.state_dict)), sorted(set(ckpt.state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit {ckpt.config.get('model')}({_kwargs_text(ckpt.config)}): "
                              f"missing {missing}, unexpected {unexpected}")
    for key, value in ckpt.state_dict.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: weight {key!r} has shape {tuple(value.shape)} but "
                                  f"{ckpt.config.get('model')}({_kwargs_text(ckpt.config)}) expects "
                                  f"{tuple(expected[key].shape)}; the config and the weights disagree")
    model.load_state_dict(ckpt.state_dict)
    return model.to(device).eval()


# --- internals -----------------------------------------------------------------------------------


def _model_classes() -> dict[str, type[nn.Module]]:
    from workbench.models.dae import MLPDAE
    from workbench.models.rbae import RBAE
    from workbench.models.spiking_dae import SpikingDAE

    return {cls.__name__: cls for cls in (MLPDAE, SpikingDAE, RBAE)}


def _build(config: Mapping[str, Any], path: Path) -> nn.Module:
    from workbench.models.presets import DAE_PRESETS

    preset = config.get("preset")
    if preset is not None and preset not in DAE_PRESETS:
        raise CheckpointError(f"{path} was made for preset {preset!r}, which this workbench does not know; "
                              f"known presets: {sorted(DAE_PRESETS)}")
    classes = _model_classes()
    name = config.get("model") or (DAE_PRESETS[preset].model if preset else None)
    if name not in classes:
        raise CheckpointError(f"{path}: unknown model {name!r} in its config; known models: {sorted(classes)}")
    kwargs = config.get("kwargs")
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: config['kwargs'] must be a dict of constructor arguments, got {kwargs!r}")
    try:
        return classes[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build {name}({_kwargs_text(config)}): {exc}") from exc


def _kwargs_text(config: Mapping[str, Any]) -> str:
    kwargs = config.get("kwargs") or {}
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _torch_load(path: Path) -> Any:
    if not path.exists():
        hint = ""
        name = path.stem
        if path.parent.name == "checkpoints" and name.startswith("dasbe_"):
            from workbench.models.presets import DAE_PRESETS

            preset = name[6:]
            data = DAE_PRESETS[preset].dataset if preset in DAE_PRESETS else preset
            hint = (f" It is a shipped checkpoint; data/checkpoints/README.md lists the command that makes it "
                    f"(python -m workbench.models.presets {preset} --data data/{data}.h5 --out <dir> --ship).")
        raise CheckpointNotFoundError(f"no checkpoint at {path}.{hint} Train one with {TRAIN_COMMAND}, or "
                                      "use workbench.models.presets.shipped_checkpoint(<preset>).")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the .pt file inside it (e.g. {path / 'best.pt'})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch words every refusal "Weights only load failed"; only "Unsupported global" means real objects
        if "unsupported global" not in str(exc).lower():
            raise CheckpointError(_unreadable(path, exc)) from exc
        raise CheckpointError(
            f"{path} holds pickled Python objects (for example the authors' original whole-module files), which "
            "the workbench refuses to unpickle. If you trust the file, convert it once to a plain state dict: "
            "torch.save(torch.load(f, weights_only=False).state_dict(), 'plain.pt')") from exc
    except Exception as exc:  # torch raises many kinds (RuntimeError, KeyError, EOFError, ...) on garbage
        raise CheckpointError(_unreadable(path, exc)) from exc


def _unreadable(path: Path, exc: Exception) -> str:
    text = str(exc).split("WeightsUnpickler error:")[-1]  # torch's own reason, past its generic preamble
    detail = next((line.strip() for line in text.splitlines() if line.strip()), "no message")
    return (f"{path} is not a readable torch checkpoint: damaged, truncated or not a .pt file "
            f"({type(exc).__name__}: {detail[:200]}); copy or train it again")


def _dumps(name: str, obj: Mapping[str, Any]) -> str:
    try:
        return json.dumps(_finite_or_none(dict(obj)), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {name} must be JSON-serialisable ({exc}); "
                              "store tensors in the state dict, not in the config") from exc


def _finite_or_none(obj: Any) -> Any:
    """NaN/inf (e.g. the loss of a diverged epoch) become JSON null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _loads(path: Path, name: str, text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        raise CheckpointError(f"{path}: {name!r} must be JSON text, got {type(text).__name__}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: {name!r} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: {name!r} must be a JSON object, got {type(value).__name__}")
    return value


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu").clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
