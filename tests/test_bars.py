"""Bars generator: bit-exact with the authors' data (spec §4, §11 item 1) and the split order."""

import hashlib

import numpy as np
import pytest

from workbench.data.bars import BARS_SEED, bars_splits, generate_bars, single_bars


def sha16(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def first_6000():
    return generate_bars(6000, np.random.RandomState(BARS_SEED))


def test_train_multi_first_6000_hashes_match_the_authors(first_6000):
    images, labels = first_6000
    assert images.dtype == labels.dtype == np.uint8 and images.shape == (6000, 20, 20)
    assert images.flags.c_contiguous and labels.flags.c_contiguous
    assert sha16(images) == "fa772c526f4d812f"
    assert sha16(labels) == "5b04c385a017fa7a"


def test_full_train_multi_hash_matches_the_authors():
    images, labels = generate_bars(60000, np.random.RandomState(BARS_SEED))
    assert sha16(images) == "258bee7bc287ad1f"
    assert sha16(images[:6000]) == "fa772c526f4d812f" and sha16(labels[:6000]) == "5b04c385a017fa7a"


def test_registry_file_equals_bars_splits(tmp_path):
    from workbench.data.datasets import make_dataset
    from workbench.data.store import list_splits, read_split

    path = make_dataset("bars", tmp_path / "bars.h5", sizes={"train_multi": 30, "test": 10, "train_single": 20},
                        progress=False)
    splits = bars_splits(n_train=30, n_test=10, n_single=20)
    assert set(list_splits(path)) == set(splits)
    for name, (images, labels) in splits.items():
        got_images, got_labels = read_split(path, name)
        assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels), name


def test_statistics_of_every_image(first_6000):
    images, labels = first_6000
    assert set(np.unique(images)) == {0, 1}
    assert (images.reshape(6000, -1).sum(1) == 204).all()  # 12 bars of 20 minus 36 double-counted crossings
    assert ((labels > 0).reshape(6000, -1).sum(1) == 168).all()  # crossings are label 0
    assert all(len(np.unique(lab)) - 1 == 12 for lab in labels[:500])
    assert ((labels > 0) <= (images > 0)).all()


def test_label_layout_vertical_first_then_horizontal():
    rng = np.random.RandomState(5)
    images, labels = generate_bars(1, rng)
    replay = np.random.RandomState(5)
    cols, rows = replay.choice(20, 6, replace=False), replay.choice(20, 6, replace=False)
    for j, c in enumerate(cols):
        free = np.setdiff1d(np.arange(20), rows)
        assert (labels[0, free, c] == j + 1).all()
    for j, r in enumerate(rows):
        free = np.setdiff1d(np.arange(20), cols)
        assert (labels[0, r, free] == 7 + j).all()
    assert (labels[0][np.ix_(rows, cols)] == 0).all() and (images[0][np.ix_(rows, cols)] == 1).all()


def test_choice_of_size_zero_still_draws_a_permutation():
    a = np.random.RandomState(3)
    images, labels = generate_bars(1, a, n_vertical=0, n_horizontal=1)
    b = np.random.RandomState(3)
    b.permutation(20)  # the empty vertical draw
    row = b.permutation(20)[0]
    assert images[0, row].all() and images[0].sum() == 20 and (labels[0, row] == 1).all()
    assert a.randint(1 << 30) == b.randint(1 << 30)  # both streams are at the same place


def test_splits_order_and_single_set():
    splits = bars_splits(n_train=30, n_test=10, n_single=20)
    assert set(splits) == {"train_multi", "test", "train_single", "train_single_hori", "train_single_vert"}
    ref = np.random.RandomState(BARS_SEED)
    assert np.array_equal(splits["train_multi"][0], generate_bars(30, ref)[0])
    assert np.array_equal(splits["test"][0], generate_bars(10, ref)[0])
    hori, vert = splits["train_single_hori"][0], splits["train_single_vert"][0]
    assert hori.shape == vert.shape == (10, 20, 20)
    assert (hori.sum(axis=2).max(axis=1) == 20).all() and (hori.sum(axis=(1, 2)) == 20).all()
    assert (vert.sum(axis=1).max(axis=1) == 20).all() and (vert.sum(axis=(1, 2)) == 20).all()
    single, single_labels = splits["train_single"]
    both = np.concatenate([hori, vert])
    assert np.array_equal(hori, generate_bars(10, ref, n_vertical=0, n_horizontal=1)[0])
    assert np.array_equal(vert, generate_bars(10, ref, n_vertical=1, n_horizontal=0)[0])
    order = np.arange(20)
    ref.shuffle(order)  # the same stream, after the single images
    assert np.array_equal(single, both[order])
    assert set(np.unique(single_labels)) == {0, 1}


def test_single_bars_helper():
    images, labels = single_bars(50, seed=1)
    assert images.shape == (50, 20, 20) and images.dtype == np.uint8
    assert (images.sum(axis=(1, 2)) == 20).all() and np.array_equal(images, labels)
    horizontal = images.sum(axis=2).max(axis=1) == 20
    assert 0 < horizontal.sum() < 50
    assert np.array_equal(images, single_bars(50, seed=1)[0])


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="n_vertical"):
        generate_bars(1, np.random.RandomState(0), n_vertical=21)
    with pytest.raises(ValueError, match="n must be"):
        generate_bars(-1, np.random.RandomState(0))
