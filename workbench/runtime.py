"""Process-level settings shared by the CLI, notebooks and benchmarks."""

from __future__ import annotations

import os

import torch

THREADS_ENV = "HNNWB_THREADS"


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count deliberately and return it.

    On a busy 2-core machine, two OpenMP threads running many tiny ops can be ~30x slower than one,
    so with <= 2 cores we default to one thread. ``threads`` (or the ``HNNWB_THREADS`` environment
    variable) overrides the choice.
    """
    if threads is None and os.environ.get(THREADS_ENV):
        threads = int(os.environ[THREADS_ENV])
    if threads is None:
        cores = os.cpu_count() or 1
        threads = 1 if cores <= 2 else min(cores, 8)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def resolve_device(device: str | None = None) -> torch.device:
    """'auto'/None picks CUDA when present, else CPU; anything else is passed to torch.device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
