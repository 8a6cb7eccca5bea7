"""HDF5 dataset store: the authors' layout, our uint8 writer, streaming, atomicity and every error path."""

import h5py
import numpy as np
import pytest

from workbench.data.store import (
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetWriter,
    list_splits,
    read_attrs,
    read_overlap,
    read_split,
    write_splits,
)


def make_split(n, shape=(6, 5), seed=0, max_label=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, max_label + 1, (n, *shape))
    images = (labels > 0) | (rng.random((n, *shape)) < 0.1)  # overlap pixels are on but labelled 0
    return images.astype(np.float32), labels


def write_authors_file(path, splits):
    """The authors' files: float32 images and labels, no overlap, no chunking or attributes."""
    with h5py.File(path, "w") as f:
        for name, (images, labels) in splits.items():
            f.create_group(name)
            f[name].create_dataset("default", data=np.asarray(images, dtype=np.float32))
            f[name].create_dataset("groups", data=np.asarray(labels, dtype=np.float32))


def no_temp_files(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")] == []


# --- round trips ---------------------------------------------------------------------------------


def test_round_trip_uint8_with_overlap_and_attrs(tmp_path):
    train, test = make_split(230, seed=1), make_split(7, seed=2)
    overlap = np.random.default_rng(3).random(train[0].shape) < 0.05
    path = write_splits(
        tmp_path / "d.h5",
        {"train_multi": train, "test": test},
        overlap={"train_multi": overlap},
        attrs={"seed": 471958, "generator": "bars", "params": {"n": 6}},
    )
    images, labels = read_split(path, "train_multi")
    assert images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, train[0])
    np.testing.assert_array_equal(labels, train[1])
    np.testing.assert_array_equal(read_overlap(path, "train_multi"), overlap)
    assert read_overlap(path, "test") is None
    assert list_splits(path) == {"train_multi": (230, 6, 5), "test": (7, 6, 5)}
    attrs = read_attrs(path)
    assert attrs["seed"] == 471958 and attrs["generator"] == "bars" and attrs["params"] == '{"n": 6}'
    with h5py.File(path, "r") as f:
        ds = f["train_multi/default"]
        assert ds.dtype == np.uint8 and ds.chunks == (100, 6, 5) and ds.compression == "gzip"
        assert f["test/default"].chunks == (7, 6, 5)
        assert f["train_multi/groups"].dtype == np.uint8 and f["train_multi/overlap"].dtype == np.uint8


def test_many_labels_use_uint16(tmp_path):
    images, labels = make_split(3, max_label=300)
    path = write_splits(tmp_path / "d.h5", {"test": (images, labels)})
    with h5py.File(path, "r") as f:
        assert f["test/groups"].dtype == np.uint16
    np.testing.assert_array_equal(read_split(path, "test")[1], labels)


def test_reads_authors_float32_files_as_is(tmp_path):
    train = make_split(12, shape=(28, 28), seed=4)
    path = tmp_path / "authors.h5"
    write_authors_file(path, {"train_multi": train, "train_single_hori": make_split(2, shape=(28, 28))})
    images, labels = read_split(path, "train_multi", start=2, stop=9)
    np.testing.assert_array_equal(images, train[0][2:9])
    np.testing.assert_array_equal(labels, train[1][2:9])
    assert list_splits(path) == {"train_multi": (12, 28, 28), "train_single_hori": (2, 28, 28)}
    assert read_overlap(path, "train_multi") is None


def test_slicing(tmp_path):
    images, labels = make_split(250, seed=5)
    path = write_splits(tmp_path / "d.h5", {"test": (images, labels)})
    for start, stop in [(0, None), (95, 205), (249, 250), (10, 10)]:
        got_images, got_labels = read_split(path, "test", start=start, stop=stop)
        np.testing.assert_array_equal(got_images, images[start:stop])
        np.testing.assert_array_equal(got_labels, labels[start:stop])
    for start, stop in [(0, 251), (-1, 5), (6, 5)]:
        with pytest.raises(DatasetFormatError, match="has 250 images"):
            read_split(path, "test", start=start, stop=stop)


def test_empty_split(tmp_path):
    path = write_splits(tmp_path / "d.h5", {"test": (np.zeros((0, 4, 4)), np.zeros((0, 4, 4), dtype=int))})
    images, labels = read_split(path, "test")
    assert images.shape == (0, 4, 4) and labels.shape == (0, 4, 4)


# --- streaming writer and atomicity --------------------------------------------------------------


def test_streaming_writer_chunk_by_chunk(tmp_path):
    images, labels = make_split(250, seed=6)
    overlap = images.astype(bool) & (labels == 0)
    path = tmp_path / "big.h5"
    with DatasetWriter(path, attrs={"seed": 1}) as w:
        w.create_split("train_multi", 250, (6, 5), overlap=True)
        for start in range(0, 250, 60):
            rows = slice(start, start + 60)
            w.write("train_multi", start, images[rows], labels[rows], overlap[rows])
        assert not path.exists()  # nothing visible until the block ends
    np.testing.assert_array_equal(read_split(path, "train_multi")[0], images)
    np.testing.assert_array_equal(read_overlap(path, "train_multi"), overlap)
    assert no_temp_files(tmp_path)


def test_exception_inside_writer_leaves_no_file(tmp_path):
    path = tmp_path / "d.h5"
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(path) as w:
            w.create_split("test", 10, (3, 3))
            w.write("test", 0, np.zeros((5, 3, 3)), np.zeros((5, 3, 3)))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_old_file(tmp_path):
    path = write_splits(tmp_path / "d.h5", {"test": make_split(4)})
    bad_images = np.full((4, 6, 5), 0.5)
    with pytest.raises(DatasetFormatError, match="binary"):
        write_splits(path, {"test": (bad_images, np.zeros((4, 6, 5), dtype=int))})
    assert read_split(path, "test")[0].shape == (4, 6, 5)
    assert no_temp_files(tmp_path)


def test_incomplete_split_is_an_error_and_no_file(tmp_path):
    path = tmp_path / "d.h5"
    with pytest.raises(DatasetFormatError, match=r"5 of 10 images were never written \(first missing index 5\)"):
        with DatasetWriter(path) as w:
            w.create_split("test", 10, (3, 3))
            w.write("test", 0, np.zeros((5, 3, 3)), np.zeros((5, 3, 3)))
    assert list(tmp_path.iterdir()) == []


def test_writer_validates_writes(tmp_path):
    with pytest.raises(DatasetFormatError):
        with DatasetWriter(tmp_path / "d.h5") as w:
            w.create_split("test", 4, (3, 3))
            with pytest.raises(DatasetFormatError, match="not created"):
                w.write("train", 0, np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))
            with pytest.raises(DatasetFormatError, match="do not fit"):
                w.write("test", 3, np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))
            with pytest.raises(DatasetFormatError, match=r"\(3, 4\)"):
                w.write("test", 0, np.zeros((1, 3, 4)), np.zeros((1, 3, 4)))
            with pytest.raises(DatasetFormatError, match="uint16"):
                w.write("test", 0, np.zeros((1, 3, 3)), np.full((1, 3, 3), 256))
            with pytest.raises(DatasetFormatError, match="overlap"):
                w.write("test", 0, np.zeros((1, 3, 3)), np.zeros((1, 3, 3)), overlap=np.zeros((1, 3, 3)))
            with pytest.raises(DatasetFormatError, match="already created"):
                w.create_split("test", 4, (3, 3))
    assert no_temp_files(tmp_path)
    with pytest.raises(RuntimeError, match="not open"):
        DatasetWriter(tmp_path / "x.h5").create_split("test", 1, (2, 2))


def test_write_splits_rejects_unknown_overlap_split(tmp_path):
    with pytest.raises(DatasetFormatError, match="train"):
        write_splits(tmp_path / "d.h5", {"test": make_split(2)}, overlap={"train": np.zeros((2, 6, 5))})


# --- reader errors -------------------------------------------------------------------------------


def test_missing_file_says_how_to_generate(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="Generate it first"):
        read_split(tmp_path / "none.h5", "test")
    with pytest.raises(FileNotFoundError):
        list_splits(tmp_path / "none.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not hdf5")
    with pytest.raises(DatasetFormatError, match="not a readable HDF5 file"):
        read_split(path, "test")


def test_missing_split_lists_available(tmp_path):
    path = tmp_path / "a.h5"
    write_authors_file(path, {"train_multi": make_split(2), "test": make_split(2)})
    expected = r"no split 'train_single'; available splits: \['test', 'train_multi'\]"
    with pytest.raises(DatasetFormatError, match=expected):
        read_split(path, "train_single")


@pytest.mark.parametrize("missing", ["default", "groups"])
def test_missing_dataset(tmp_path, missing):
    path = tmp_path / "a.h5"
    write_authors_file(path, {"test": make_split(2)})
    with h5py.File(path, "a") as f:
        del f[f"test/{missing}"]
    with pytest.raises(DatasetFormatError, match=rf"missing dataset\(s\) \['{missing}'\]"):
        read_split(path, "test")


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), r"same shape; got images \(2, 4, 4\) and labels \(2, 4, 5\)"),
        (np.zeros((2, 16)), np.zeros((2, 16)), r"\[n, H, W\]; got shape \(2, 16\)"),
        (np.full((2, 4, 4), 0.5), np.zeros((2, 4, 4)), "binary 0/1; found value 0.5"),
        (np.zeros((2, 4, 4)), np.full((2, 4, 4), -1.0), "labels must be >= 0"),
        (np.zeros((2, 4, 4)), np.full((2, 4, 4), 1.5), "whole numbers"),
    ],
)
def test_malformed_authors_files(tmp_path, images, labels, message):
    path = tmp_path / "a.h5"
    write_authors_file(path, {"test": (images, labels)})
    with pytest.raises(DatasetFormatError, match=message):
        read_split(path, "test")


def test_writer_rejects_malformed_data(tmp_path):
    images, labels = make_split(2)
    with pytest.raises(DatasetFormatError, match="labels must be >= 0"):
        write_splits(tmp_path / "d.h5", {"test": (images, -labels - 1)})
    with pytest.raises(DatasetFormatError, match=r"\[n, H, W\]"):
        write_splits(tmp_path / "d.h5", {"test": (images[0], labels[0])})
    assert list(tmp_path.iterdir()) == []


def test_split_size_names_the_fix(tmp_path):
    from workbench.data.store import DatasetFormatError, DatasetNotFoundError, split_size, write_splits

    path = tmp_path / "d.h5"
    with pytest.raises(DatasetNotFoundError, match="make it with `hnnwb data make bars`"):
        split_size(path, "test", make_hint="hnnwb data make bars")
    images = np.zeros((3, 4, 4), dtype=np.float32)
    write_splits(path, {"test": (images, np.zeros((3, 4, 4), dtype=np.int64))})
    assert split_size(path, "test", make_hint="-") == 3
    with pytest.raises(DatasetFormatError, match=r"has no split 'train'; available: \['test'\]"):
        split_size(path, "train", make_hint="-")
