"""SpikeRecord: the one object every simulation returns and every view reads.

Spikes are stored time-first, ``[T, B, N]`` as ``bool``; an optional image shape maps the N neurons
back onto pixels, ``cycle`` gives the number of steps per oscillation cycle (DASBE's delay D, GUST's
T slots) so views can fold time into (cycle, slot), and ``labels`` holds per-neuron group labels
(0 = background or overlap, 1..K = objects).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from workbench.fileio import atomic_path

FORMAT_NAME = "hnnwb.SpikeRecord"
FORMAT_VERSION = 1


class RecordFormatError(ValueError):
    """A SpikeRecord (in memory or on disk) does not have the expected layout."""


def _as_bool_spikes(spikes: Any) -> torch.Tensor:
    t = torch.as_tensor(spikes)
    if t.dtype == torch.bool:
        return t
    if t.is_floating_point() or t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        if t.numel() and not bool(((t == 0) | (t == 1)).all()):
            raise RecordFormatError(
                "spikes must be binary (0/1 or bool); got values outside {0, 1}. "
                "Threshold analog traces before building a SpikeRecord."
            )
        return t.to(torch.bool)
    raise RecordFormatError(f"spikes must be bool or a 0/1 numeric tensor, got dtype {t.dtype}")


@dataclass
class SpikeRecord:
    """Spikes ``[T, B, N]`` plus what is needed to look at them.

    Attributes:
        spikes: bool tensor, time-first ``[T, B, N]``.
        image_shape: ``(H, W)`` with ``H * W == N`` when neurons are pixels, else ``None``.
        dt: duration of one step (arbitrary units, 1.0 = one step).
        cycle: steps per cycle, or ``None`` when the dynamics have no cycle.
        labels: int64 ``[B, N]`` group labels, 0 = background/overlap.
        images: float32 ``[B, N]`` input images.
        meta: free JSON-serialisable metadata (model, seed, parameters ...).
    """

    spikes: torch.Tensor
    image_shape: tuple[int, int] | None = None
    dt: float = 1.0
    cycle: int | None = None
    labels: torch.Tensor | None = None
    images: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spikes = _as_bool_spikes(self.spikes)
        if self.spikes.dim() != 3:
            raise RecordFormatError(
                f"spikes must be [T, B, N] (time-first); got shape {tuple(self.spikes.shape)}. "
                "For a single sample use spikes[:, None, :]."
            )
        T, B, N = self.spikes.shape
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)  # type: ignore[assignment]
            if len(self.image_shape) != 2 or self.image_shape[0] * self.image_shape[1] != N:
                raise RecordFormatError(f"image_shape {self.image_shape} does not hold N={N} neurons (need H*W == N)")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise RecordFormatError(f"dt must be a positive finite number, got {self.dt}")
        if self.cycle is not None:
            self.cycle = int(self.cycle)
            if self.cycle < 1:
                raise RecordFormatError(f"cycle must be >= 1 step, got {self.cycle}")
        if self.labels is not None:
            self.labels = torch.as_tensor(self.labels).to(torch.int64)
            if tuple(self.labels.shape) != (B, N):
                raise RecordFormatError(f"labels must be [B, N] = [{B}, {N}], got {tuple(self.labels.shape)}")
            if self.labels.numel() and int(self.labels.min()) < 0:
                raise RecordFormatError("labels must be >= 0 (0 = background or overlap, 1..K = objects)")
        if self.images is not None:
            self.images = torch.as_tensor(self.images).to(torch.float32)
            if tuple(self.images.shape) != (B, N):
                raise RecordFormatError(f"images must be [B, N] = [{B}, {N}], got {tuple(self.images.shape)}")

    # --- shape ---------------------------------------------------------------------------------
    @property
    def T(self) -> int:
        return int(self.spikes.shape[0])

    @property
    def B(self) -> int:
        return int(self.spikes.shape[1])

    @property
    def N(self) -> int:
        return int(self.spikes.shape[2])

    @property
    def n_cycles(self) -> int:
        """Number of complete cycles in the record (0 when ``cycle`` is unset)."""
        return self.T // self.cycle if self.cycle else 0

    def __repr__(self) -> str:
        return (
            f"SpikeRecord(T={self.T}, B={self.B}, N={self.N}, spikes={int(self.spikes.sum())}, "
            f"image_shape={self.image_shape}, cycle={self.cycle}, labels={'yes' if self.labels is not None else 'no'})"
        )

    # --- slicing -------------------------------------------------------------------------------
    def select(self, index: int | slice | list[int] | torch.Tensor) -> "SpikeRecord":
        """Keep some batch elements (an int keeps a batch axis of size 1)."""
        if isinstance(index, int):
            if not -self.B <= index < self.B:
                raise IndexError(f"batch index {index} out of range for B={self.B}")
            index = [index]
        pick = (lambda x: None if x is None else x[index])
        return replace(self, spikes=self.spikes[:, index], labels=pick(self.labels), images=pick(self.images))

    def window(self, start: int, stop: int | None = None) -> "SpikeRecord":
        """Keep steps ``start:stop`` (Python slice semantics, negatives allowed)."""
        return replace(self, spikes=self.spikes[start:stop])

    def last_cycles(self, k: int) -> "SpikeRecord":
        """Keep the last ``k`` complete cycles."""
        if int(k) < 0:
            raise ValueError(f"k (number of cycles to keep) must be >= 0, got {k}")
        cycles = self.cycles()
        k = min(int(k), cycles.shape[0])
        # cycles[K - k:], not cycles[-k:], which would keep everything for k = 0
        block = cycles[cycles.shape[0] - k :].reshape(k * self.cycle, self.B, self.N)  # type: ignore[operator]
        return replace(self, spikes=block)

    def cycles(self) -> torch.Tensor:
        """Fold time into ``[K, cycle, B, N]`` (a trailing incomplete cycle is dropped)."""
        if not self.cycle:
            raise RecordFormatError("this record has no cycle length; pass cycle=... when creating it")
        K = self.n_cycles
        return self.spikes[: K * self.cycle].reshape(K, self.cycle, self.B, self.N)

    # --- summaries -----------------------------------------------------------------------------
    def population_count(self) -> torch.Tensor:
        """Spikes per step, ``[T, B]``."""
        return self.spikes.sum(dim=2)

    def spike_times(self, b: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(step indices, neuron indices) of every spike of batch element ``b``, ordered by time."""
        t, n = torch.nonzero(self.spikes[:, b], as_tuple=True)
        return t.cpu().numpy(), n.cpu().numpy()

    def to(self, device: str | torch.device) -> "SpikeRecord":
        move = (lambda x: None if x is None else x.to(device))
        return replace(self, spikes=self.spikes.to(device), labels=move(self.labels), images=move(self.images))

    # --- HDF5 ----------------------------------------------------------------------------------
    def to_hdf5(self, path: str | os.PathLike) -> Path:
        """Write the record atomically (spikes as gzip-compressed uint8)."""
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT_NAME
                f.attrs["version"] = FORMAT_VERSION
                f.attrs["dt"] = float(self.dt)
                f.attrs["cycle"] = -1 if self.cycle is None else int(self.cycle)
                f.attrs["image_shape"] = [] if self.image_shape is None else list(self.image_shape)
                f.attrs["meta"] = json.dumps(self.meta)
                f.create_dataset("spikes", data=self.spikes.cpu().numpy().astype(np.uint8), compression="gzip")
                if self.labels is not None:
                    f.create_dataset("labels", data=self.labels.cpu().numpy(), compression="gzip")
                if self.images is not None:
                    f.create_dataset("images", data=self.images.cpu().numpy(), compression="gzip")
        return Path(path)

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike) -> "SpikeRecord":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no spike record at {path}")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise RecordFormatError(f"{path} is not a readable HDF5 file ({exc})") from exc
        with f:
            if f.attrs.get("format") != FORMAT_NAME or "spikes" not in f:
                raise RecordFormatError(
                    f"{path} is not a SpikeRecord file (attribute format={f.attrs.get('format')!r}, "
                    f"datasets={sorted(f.keys())}); write one with SpikeRecord.to_hdf5"
                )
            missing = [k for k in ("dt", "cycle", "image_shape", "meta") if k not in f.attrs]
            if missing:
                raise RecordFormatError(f"{path} lacks SpikeRecord attribute(s) {missing}; rewrite it with to_hdf5")
            cycle = int(f.attrs["cycle"])
            shape = tuple(int(s) for s in f.attrs["image_shape"])
            return cls(
                spikes=torch.from_numpy(f["spikes"][()].astype(bool)),
                image_shape=shape if shape else None,  # type: ignore[arg-type]
                dt=float(f.attrs["dt"]),
                cycle=None if cycle < 0 else cycle,
                labels=torch.from_numpy(f["labels"][()]) if "labels" in f else None,
                images=torch.from_numpy(f["images"][()]) if "images" in f else None,
                meta=json.loads(f.attrs["meta"]),
            )
