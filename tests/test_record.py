"""SpikeRecord: validation, slicing, cycle folding, summaries, HDF5 round trip and file errors."""

import h5py
import numpy as np
import pytest
import torch

from workbench.record import FORMAT_NAME, RecordFormatError, SpikeRecord


def make_record(T=23, B=3, N=6, cycle=5, seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    return SpikeRecord(torch.rand(T, B, N, generator=gen) < 0.3, cycle=cycle, **kwargs)


# --- construction --------------------------------------------------------------------------------


def test_spikes_are_converted_to_bool():
    for spikes in (np.ones((2, 1, 3), dtype=np.uint8), torch.zeros(2, 1, 3), torch.ones(2, 1, 3, dtype=torch.int64)):
        assert SpikeRecord(spikes).spikes.dtype == torch.bool


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spikes": torch.full((2, 1, 3), 2.0)}, "binary"),
        ({"spikes": torch.zeros(2, 3, dtype=torch.complex64)}, "dtype"),
        ({"spikes": torch.zeros(4, 6)}, r"\[T, B, N\]"),
        ({"image_shape": (2, 4)}, "does not hold N=6"),
        ({"image_shape": (6,)}, "does not hold"),
        ({"dt": 0.0}, "dt"),
        ({"dt": float("nan")}, "dt"),
        ({"cycle": 0}, "cycle"),
        ({"labels": torch.zeros(2, 6)}, r"labels must be \[B, N\] = \[3, 6\]"),
        ({"labels": -torch.ones(3, 6)}, ">= 0"),
        ({"images": torch.zeros(3, 5)}, r"images must be \[B, N\]"),
    ],
)
def test_construction_errors(kwargs, message):
    args = {"spikes": torch.zeros(4, 3, 6, dtype=torch.bool), **kwargs}
    with pytest.raises(RecordFormatError, match=message):
        SpikeRecord(**args)


def test_shape_properties_and_repr():
    rec = make_record(image_shape=(2, 3))
    assert (rec.T, rec.B, rec.N, rec.n_cycles) == (23, 3, 6, 4)
    assert rec.image_shape == (2, 3)
    assert "T=23" in repr(rec) and "cycle=5" in repr(rec)
    assert make_record(cycle=None).n_cycles == 0


# --- slicing -------------------------------------------------------------------------------------


def test_select_keeps_batch_axis_and_slices_labels_images():
    labels = torch.arange(18).reshape(3, 6) % 4
    images = torch.rand(3, 6)
    rec = make_record(labels=labels, images=images)
    one = rec.select(-1)
    assert one.spikes.shape == (23, 1, 6)
    assert torch.equal(one.spikes[:, 0], rec.spikes[:, 2]) and torch.equal(one.labels[0], labels[2])
    assert torch.equal(rec.select([2, 0]).images, images[[2, 0]])
    assert rec.select(slice(0, 2)).B == 2
    assert rec.select(torch.tensor([True, False, True])).B == 2
    with pytest.raises(IndexError, match="out of range"):
        rec.select(3)


def test_window_uses_slice_semantics():
    rec = make_record()
    assert torch.equal(rec.window(5, 12).spikes, rec.spikes[5:12])
    assert torch.equal(rec.window(-4).spikes, rec.spikes[-4:])
    assert rec.window(5, 12).cycle == 5


def test_cycles_fold_time_and_drop_incomplete_cycle():
    rec = make_record(T=23, cycle=5)
    cycles = rec.cycles()
    assert cycles.shape == (4, 5, 3, 6)
    assert torch.equal(cycles[2, 3], rec.spikes[13])
    with pytest.raises(RecordFormatError, match="no cycle length"):
        make_record(cycle=None).cycles()


def test_last_cycles():
    rec = make_record(T=23, cycle=5)
    assert torch.equal(rec.last_cycles(2).spikes, rec.spikes[10:20])
    assert rec.last_cycles(10).T == 20  # capped at the complete cycles
    assert rec.last_cycles(0).T == 0
    assert rec.window(0, 3).last_cycles(1).T == 0  # no complete cycle
    with pytest.raises(ValueError, match=">= 0"):
        rec.last_cycles(-1)


# --- summaries -----------------------------------------------------------------------------------


def test_population_count_and_spike_times():
    spikes = torch.zeros(4, 2, 3, dtype=torch.bool)
    spikes[0, 1, 2] = spikes[2, 1, 0] = spikes[2, 1, 1] = spikes[3, 0, 0] = True
    rec = SpikeRecord(spikes)
    assert rec.population_count().tolist() == [[0, 1], [0, 0], [0, 2], [1, 0]]
    t, n = rec.spike_times(1)
    assert t.tolist() == [0, 2, 2] and n.tolist() == [2, 0, 1]
    assert [a.tolist() for a in rec.spike_times(0)] == [[3], [0]]


def test_to_device_keeps_everything():
    rec = make_record(labels=torch.ones(3, 6), images=torch.ones(3, 6))
    moved = rec.to("cpu")
    assert torch.equal(moved.spikes, rec.spikes) and torch.equal(moved.labels, rec.labels)


# --- HDF5 ----------------------------------------------------------------------------------------


def test_hdf5_round_trip(tmp_path):
    rec = make_record(
        image_shape=(2, 3),
        dt=0.5,
        labels=torch.randint(0, 3, (3, 6)),
        images=torch.rand(3, 6).round(),
        meta={"model": "dasbe", "seed": 111, "params": {"D": 29, "r": 8}},
    )
    path = rec.to_hdf5(tmp_path / "sub" / "rec.h5")
    back = SpikeRecord.from_hdf5(path)
    assert torch.equal(back.spikes, rec.spikes) and back.spikes.dtype == torch.bool
    assert torch.equal(back.labels, rec.labels) and torch.equal(back.images, rec.images)
    assert (back.image_shape, back.dt, back.cycle, back.meta) == ((2, 3), 0.5, 5, rec.meta)


def test_hdf5_round_trip_without_optional_fields(tmp_path):
    rec = make_record(cycle=None)
    back = SpikeRecord.from_hdf5(rec.to_hdf5(tmp_path / "rec.h5"))
    assert back.cycle is None and back.image_shape is None and back.labels is None and back.images is None
    assert torch.equal(back.spikes, rec.spikes) and back.meta == {}


def test_hdf5_write_is_atomic(tmp_path):
    path = make_record(seed=1).to_hdf5(tmp_path / "rec.h5")
    bad = make_record(seed=2, meta={"not json": object()})
    with pytest.raises(TypeError):
        bad.to_hdf5(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.h5"]  # no temp file left behind
    assert torch.equal(SpikeRecord.from_hdf5(path).spikes, make_record(seed=1).spikes)  # old file intact


def test_hdf5_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no spike record"):
        SpikeRecord.from_hdf5(tmp_path / "none.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(RecordFormatError, match="not a readable HDF5 file"):
        SpikeRecord.from_hdf5(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("default", data=np.zeros((2, 3)))
    with pytest.raises(RecordFormatError, match=r"not a SpikeRecord file.*'default'"):
        SpikeRecord.from_hdf5(other)


def test_hdf5_missing_attribute_or_bad_spikes(tmp_path):
    path = make_record().to_hdf5(tmp_path / "rec.h5")
    with h5py.File(path, "a") as f:
        del f.attrs["dt"]
    with pytest.raises(RecordFormatError, match=r"lacks SpikeRecord attribute\(s\) \['dt'\]"):
        SpikeRecord.from_hdf5(path)
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as f:
        f.attrs.update({"format": FORMAT_NAME, "version": 1, "dt": 1.0, "cycle": -1, "image_shape": [], "meta": "{}"})
        f.create_dataset("spikes", data=np.zeros((4, 6), dtype=np.uint8))
    with pytest.raises(RecordFormatError, match=r"\[T, B, N\]"):
        SpikeRecord.from_hdf5(flat)


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    from workbench.fileio import write_json

    path = write_json(tmp_path / "x.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
