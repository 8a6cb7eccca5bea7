"""Shared test settings: one torch thread (tests run many tiny ops on a 2-core CI machine)."""

import os

os.environ.setdefault("HNNWB_THREADS", "1")

from workbench.runtime import configure_threads  # noqa: E402

configure_threads()
