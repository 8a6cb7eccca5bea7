"""Shared test settings: one torch thread (tests run many tiny ops on a 2-core CI machine)."""

import os

os.environ.setdefault("HNNWB_THREADS", "1")

from workbench.runtime import configure_threads  # noqa: E402

configure_threads()


import pytest  # noqa: E402

GUST_TINY_SIZES = {"train_multi": 12, "test": 6, "train_single": 0, "train_single_0": 0, "train_single_1": 0,
                   "train_single_2": 0}


@pytest.fixture(scope="session")
def gust_tiny_data(tmp_path_factory):
    """A folder with tiny shapes_multiobj_3_2 and 3_3 files (12 training and 6 test scenes each), made once."""
    from workbench.data.datasets import make_dataset

    d = tmp_path_factory.mktemp("gust_tiny")
    for n in (2, 3):
        make_dataset(f"shapes_multiobj_3_{n}", d / f"shapes_multiobj_3_{n}.h5", progress=False, sizes=GUST_TINY_SIZES)
    return d
