"""Spatio-temporal spike patterns for the SNN-IIR associative memory (specs/snn_iir.md §4.1-§4.3).

Ten binary 300 x 300 images are rendered here with numpy from fixed geometry (no seed, no shipped
asset): thick segments, ring arcs and polygon outlines, stroke width 30 px. An image is read as
**row = input neuron, column = time step**, then multiplied by a fixed lattice mask, so each pattern
is a spike raster ``[T = 300, N = 300]`` once transposed to our time-first layout.

* ``render_images()``   uint8 ``[10, 300, 300]`` (0/1): A, B, C, D, diamond, arch, X and three
  triangles (right, left, down). B/D and the three triangles are deliberate near-duplicates.
* ``lattice_mask()``    the 6,000-one mask: column 5j has ones at rows (j mod 3) + 3k.
* ``make_patterns()``   masked images as time-first float32 rasters ``[10, T, N]``.
* ``delayed_target``, ``silent_baseline``: the task's target (pattern delayed by 4 steps) and the loss
  of an all-silent output under the fixed two-state read-out filter τ 8/2.
* ``corrupt(patterns, item_ids, seed, epoch, params)``  the cue generator of §4.3, a pure vectorised
  function of (seed, epoch, item index) built on the counter-based ``workbench.rng``.
* ``save_patterns(out_dir)`` writes ``patterns.npz`` (uint8 images, compressed) and a PNG contact sheet.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench.checks import require_nonnegative
from workbench.fileio import atomic_path
from workbench.rng import row_keys, uniform, uniform_at

__all__ = ["SIZE", "DELAY", "NAMES", "CorruptionParams", "render_images", "lattice_mask", "make_patterns",
           "delayed_target", "filtered", "silent_baseline", "silent_baselines", "corrupt", "corrupted_cues",
           "contact_sheet", "write_png", "save_patterns", "load_pattern_images", "file_sha256"]

SIZE = 300  # neurons = time steps
STROKE = 30.0  # stroke width in px
DELAY = 4  # target = pattern delayed by 4 steps
NAMES = ("A", "B", "C", "D", "diamond", "arch", "X", "triangle_right", "triangle_left", "triangle_down")

# counter-based random streams of the cue generator (kept apart from workbench.rng.Stream's values)
_STREAM_CHOICES, _STREAM_JITTER_U1, _STREAM_JITTER_U2, _STREAM_NOISE = 101, 102, 103, 104


# ----------------------------------------------------------------------------------------------------
# Rendering primitives: boolean masks over a SIZE x SIZE grid (row = y downwards, col = x)
# ----------------------------------------------------------------------------------------------------


def _grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    return rows, cols


def _segment(p0: tuple[float, float], p1: tuple[float, float], width: float = STROKE) -> np.ndarray:
    """Pixels within width/2 of the segment p0-p1 (points as (row, col))."""
    rows, cols = _grid()
    (r0, c0), (r1, c1) = p0, p1
    dr, dc = r1 - r0, c1 - c0
    length2 = dr * dr + dc * dc
    t = np.clip(((rows - r0) * dr + (cols - c0) * dc) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    dist2 = (rows - (r0 + t * dr)) ** 2 + (cols - (c0 + t * dc)) ** 2
    return dist2 <= (width / 2.0) ** 2


def _arc(centre: tuple[float, float], radius: float, start_deg: float, stop_deg: float,
         width: float = STROKE) -> np.ndarray:
    """Ring |r - radius| <= width/2 for angles in [start, stop] (degrees, 0 = right, 90 = up)."""
    rows, cols = _grid()
    dy, dx = centre[0] - rows, cols - centre[1]
    dist = np.hypot(dy, dx)
    angle = np.degrees(np.arctan2(dy, dx)) % 360.0
    span = (stop_deg - start_deg) % 360.0 or 360.0
    inside = (angle - start_deg) % 360.0 <= span
    return (np.abs(dist - radius) <= width / 2.0) & inside


def _polygon(vertices: list[tuple[float, float]], width: float = STROKE) -> np.ndarray:
    """Closed outline through the vertices."""
    out = np.zeros((SIZE, SIZE), dtype=bool)
    for a, b in zip(vertices, vertices[1:] + vertices[:1]):
        out |= _segment(a, b, width)
    return out


def _union(*parts: np.ndarray) -> np.ndarray:
    out = np.zeros((SIZE, SIZE), dtype=bool)
    for p in parts:
        out |= p
    return out


def _geometry() -> dict[str, np.ndarray]:
    seg = _segment
    return {
        "A": _union(seg((35, 150), (265, 55)), seg((35, 150), (265, 245)), seg((185, 88), (185, 212))),
        "B": _union(seg((40, 70), (260, 70)), seg((40, 70), (40, 160)), seg((145, 70), (145, 170)),
                    seg((260, 70), (260, 170)), _arc((92.5, 160), 52.5, -90, 90), _arc((202.5, 170), 57.5, -90, 90)),
        "C": _arc((150, 155), 110, 40, 320),
        "D": _union(seg((40, 70), (260, 70)), seg((40, 70), (40, 130)), seg((260, 70), (260, 130)),
                    _arc((150, 130), 110, -90, 90)),
        "diamond": _polygon([(35, 150), (150, 265), (265, 150), (150, 35)]),
        "arch": _union(_arc((170, 150), 100, 0, 180), seg((170, 50), (265, 50)), seg((170, 250), (265, 250))),
        "X": _union(seg((40, 50), (260, 250)), seg((40, 250), (260, 50))),
        "triangle_right": _polygon([(40, 50), (260, 50), (150, 255)]),
        "triangle_left": _polygon([(40, 250), (260, 250), (150, 45)]),
        "triangle_down": _polygon([(50, 40), (50, 260), (255, 150)]),
    }


def render_images() -> np.ndarray:
    """The ten binary images, uint8 ``[10, 300, 300]`` in the order of ``NAMES`` (fixed geometry, no seed)."""
    shapes = _geometry()
    return np.stack([shapes[name] for name in NAMES]).astype(np.uint8)


def lattice_mask(size: int = SIZE) -> np.ndarray:
    """uint8 ``[size, size]`` (row = neuron, column = time): column 5j has ones at rows (j mod 3) + 3k.

    For size 300 it holds 6,000 ones; neuron r can fire only at t = 5·(r mod 3) + 15k.
    """
    mask = np.zeros((size, size), dtype=np.uint8)
    for j in range((size + 4) // 5):
        mask[j % 3::3, 5 * j] = 1
    return mask


def make_patterns(images: np.ndarray | None = None) -> torch.Tensor:
    """Masked spike patterns, time-first float32 ``[P, T, N]`` (pattern p, step t, neuron n)."""
    images = render_images() if images is None else np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"images must be [P, {SIZE}, {SIZE}] (row = neuron, column = time), got {images.shape}")
    masked = (images > 0) & lattice_mask().astype(bool)
    return torch.from_numpy(np.ascontiguousarray(masked.transpose(0, 2, 1))).float()


# ----------------------------------------------------------------------------------------------------
# Target, read-out filter and the silent baseline
# ----------------------------------------------------------------------------------------------------


def delayed_target(patterns: torch.Tensor, delay: int = DELAY) -> torch.Tensor:
    """``target[..., t, :] = pattern[..., t - delay, :]`` (zeros for t < delay); works on ``[..., T, N]``."""
    out = torch.zeros_like(patterns)
    out[..., delay:, :] = patterns[..., : patterns.shape[-2] - delay, :]
    return out


def filtered(spikes_tbn: torch.Tensor, tau_m: float = 8.0, tau_s: float = 2.0) -> torch.Tensor:
    """Two-state normalised read-out filter (h[0] = 0, peak 0.9973) over ``[T, B, N]``."""
    from workbench.models.snn_layers import ReadoutFilter

    readout = ReadoutFilter(spikes_tbn.shape[-1], tau_m, tau_s).to(spikes_tbn.device)
    return readout(spikes_tbn.to(torch.float32))


def silent_baselines(patterns: torch.Tensor, delay: int = DELAY) -> torch.Tensor:
    """Per-pattern loss of an all-silent output: mean over steps and neurons of (filtered target)²."""
    target = delayed_target(patterns, delay).transpose(0, 1)  # [T, P, N]
    return filtered(target).pow(2).mean(dim=(0, 2))


def silent_baseline(patterns: torch.Tensor, delay: int = DELAY) -> float:
    """Mean silent baseline over the patterns (the authors' patterns: 0.14215)."""
    return float(silent_baselines(patterns, delay).mean())


# ----------------------------------------------------------------------------------------------------
# Corrupted cues (§4.3)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorruptionParams:
    """Cue corruption. Faithful defaults: modify with p 0.4 (jitter with p 0.7, delete with p 0.5: a 40x40
    block or 40 whole neurons, equally likely); always add noise spikes with p 0.005 per (neuron, step)."""

    p_modify: float = 0.4
    p_jitter: float = 0.7
    jitter_sd: float = 1.0
    p_delete: float = 0.5
    block: int = 40
    p_noise: float = 0.005

    def __post_init__(self) -> None:
        for name in ("p_modify", "p_jitter", "p_delete", "p_noise"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        require_nonnegative("jitter_sd", self.jitter_sd)
        if not 0 <= int(self.block) <= SIZE:
            raise ValueError(f"block must be in [0, {SIZE}], got {self.block}")

    @classmethod
    def clean(cls) -> "CorruptionParams":
        """No corruption at all (the clean cues)."""
        return cls(p_modify=0.0, p_noise=0.0)


def corrupt(patterns: torch.Tensor, item_ids: torch.Tensor | np.ndarray | list[int], seed: int, epoch: int = 0,
            params: CorruptionParams | None = None) -> torch.Tensor:
    """Corrupted cues, time-first ``[T, B, N]`` float32 (0/1), one per item id.

    Item i starts from the clean pattern ``i mod P``. Every random number is a pure function of
    (seed, epoch, item id, position) from the counter-based RNG, so an item's cue does not depend on
    the batch it is drawn in. Steps: with p_modify, (a) with p_jitter every spike moves by
    round(N(0, jitter_sd²)) steps, clipped to [0, T-1] (colliding spikes merge); (b) with p_delete,
    delete a block x block square (choice 0) or ``block`` whole neurons (choice 1). Then, always,
    every (neuron, step) becomes 1 with probability p_noise.
    """
    p = params if params is not None else CorruptionParams()
    if patterns.dim() != 3:
        raise ValueError(f"patterns must be [P, T, N], got shape {tuple(patterns.shape)}")
    ids = torch.as_tensor(np.asarray(item_ids), dtype=torch.int64).reshape(-1)
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError(f"item ids must be >= 0, got min {int(ids.min())}")
    P, T, N = patterns.shape
    B = ids.numel()
    device = patterns.device
    ids = ids.to(device)
    cues = patterns[ids % P].clone() > 0  # [B, T, N] bool

    u = uniform(seed, _STREAM_CHOICES, ids, epoch, 8, device)  # [B, 8] per-item decisions
    modify = u[:, 0] < p.p_modify
    jitter = modify & (u[:, 1] < p.p_jitter)
    choice_block = u[:, 2] < 0.5
    delete = modify & (u[:, 3] < p.p_delete)
    top = (u[:, 4] * max(N - p.block, 1)).long()  # first deleted neuron in [0, N - block)
    left = (u[:, 5] * max(T - p.block, 1)).long()  # first deleted step in [0, T - block)

    if bool(jitter.any()) and p.jitter_sd > 0:
        b, t, n = torch.nonzero(cues & jitter[:, None, None], as_tuple=True)
        flat = t * N + n  # position of the spike in the clean raster: the counter of its shift
        keys1 = row_keys(seed, _STREAM_JITTER_U1, ids, epoch, device)
        keys2 = row_keys(seed, _STREAM_JITTER_U2, ids, epoch, device)
        u1 = uniform_at(keys1, b, flat).double()
        u2 = uniform_at(keys2, b, flat).double()
        normal = torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)  # Box-Muller
        shift = torch.round(normal * p.jitter_sd).long()
        t_new = (t + shift).clamp(0, T - 1)
        cues[b, t, n] = False
        cues[b, t_new, n] = True  # duplicates merge

    if bool(delete.any()) and p.block > 0:
        steps = torch.arange(T, device=device)
        neurons = torch.arange(N, device=device)
        in_rows = (neurons[None, :] >= top[:, None]) & (neurons[None, :] < (top + p.block)[:, None])  # [B, N]
        in_cols = (steps[None, :] >= left[:, None]) & (steps[None, :] < (left + p.block)[:, None])  # [B, T]
        in_cols = in_cols | ~choice_block[:, None]  # choice 1: every step of the deleted neurons
        zap = delete[:, None, None] & in_rows[:, None, :] & in_cols[:, :, None]
        cues &= ~zap

    if p.p_noise > 0:
        noise = uniform(seed, _STREAM_NOISE, ids, epoch, T * N, device).reshape(B, T, N) < p.p_noise
        cues |= noise
    return cues.transpose(0, 1).float().contiguous()


def corrupted_cues(patterns: torch.Tensor, n: int, seed: int, params: CorruptionParams | None = None,
                   *, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed cue set (validation: 320 cues, seed 1001; test: 1000 cues, seed 2002), epoch 0.

    Returns ``(cues [T, n, N], pattern index [n])``.
    """
    ids = torch.arange(start, start + n)
    return corrupt(patterns, ids, seed, 0, params), ids % patterns.shape[0]


# ----------------------------------------------------------------------------------------------------
# Storage: uint8 array + PNG contact sheet (no imaging library needed)
# ----------------------------------------------------------------------------------------------------


def contact_sheet(images: np.ndarray, columns: int = 5, gap: int = 10, masked: bool = True) -> np.ndarray:
    """uint8 grey ``[H, W]`` sheet: strokes light grey, lattice spikes white (when masked), gaps dark."""
    images = np.asarray(images)
    P, H, W = images.shape
    rows = math.ceil(P / columns)
    sheet = np.full((rows * H + (rows + 1) * gap, columns * W + (columns + 1) * gap), 40, dtype=np.uint8)
    mask = lattice_mask(H).astype(bool) if masked and H == W == SIZE else np.zeros((H, W), bool)
    for i, img in enumerate(images):
        tile = np.where(img > 0, 150, 0).astype(np.uint8)
        tile[(img > 0) & mask] = 255
        r, c = divmod(i, columns)
        y, x = gap + r * (H + gap), gap + c * (W + gap)
        sheet[y:y + H, x:x + W] = tile
    return sheet


def write_png(path: str | os.PathLike, grey: np.ndarray) -> Path:
    """Write an 8-bit greyscale PNG with zlib + struct only (atomic)."""
    grey = np.ascontiguousarray(np.asarray(grey, dtype=np.uint8))
    if grey.ndim != 2:
        raise ValueError(f"write_png expects a 2-D uint8 array, got shape {grey.shape}")
    h, w = grey.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + grey[r].tobytes() for r in range(h))  # filter type 0 per scanline
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return Path(path)


def save_patterns(out_dir: str | os.PathLike = Path("data/spike_patterns")) -> dict[str, Path]:
    """Write ``patterns.npz`` (compressed; key ``images``: uint8 [10, 300, 300], row = neuron, column = time;
    key ``names``) and ``contact_sheet.png``. Both are regenerated from fixed geometry by this function."""
    out = Path(out_dir)
    images = render_images()
    npy = out / "patterns.npz"
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=images, names=np.array(NAMES))
    png = write_png(out / "contact_sheet.png", contact_sheet(images))
    return {"images": npy, "contact_sheet": png}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (records which pattern file a memory was trained on)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pattern_images(path: str | os.PathLike) -> np.ndarray:
    """Binary pattern images ``[P, 300, 300]`` (row = neuron, column = time) from a ``.npy`` array or a
    ``.npz`` with key ``images`` (the layout ``save_patterns`` writes). Nonzero = on; ``make_patterns``
    then applies the lattice mask (idempotent for rasters that are already masked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pattern file {path} not found; write one with `hnnwb snn-iir assoc-patterns` "
                                f"(data/spike_patterns/patterns.npz) or save a [P, {SIZE}, {SIZE}] array with np.save")
    images = _read_array_file(path)
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE) or images.shape[0] < 1:
        raise ValueError(f"{path}: pattern images must be [P, {SIZE}, {SIZE}] (row = neuron, column = time), "
                         f"got shape {images.shape}")
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == bool):
        raise ValueError(f"{path}: pattern images must be numeric or boolean, got dtype {images.dtype}")
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise ValueError(f"{path}: pattern images contain NaN or infinite values")
    return images != 0


def _read_array_file(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a corrupt or foreign file
        raise ValueError(f"{path} is not a readable .npy/.npz array file ({exc})") from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if "images" not in loaded.files:
            raise ValueError(f"{path} is an .npz without an 'images' array (keys: {sorted(loaded.files)})")
        return np.asarray(loaded["images"])
