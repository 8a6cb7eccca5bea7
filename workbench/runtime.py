"""Process-level settings shared by the CLI, notebooks and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

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


@contextlib.contextmanager
def interrupt_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise ``KeyboardInterrupt``, so a training saves ``last.pt`` and
    stops as on Ctrl-C.

    Why: ``kill`` and job schedulers send SIGTERM, which would otherwise end the process without saving; and a
    job started in the background by a non-interactive shell (``nohup ... &``) inherits SIGINT *ignored*, so
    ``kill -INT`` would do nothing. Outside the main thread (where handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, raise_interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
