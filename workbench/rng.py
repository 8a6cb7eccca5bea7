"""Counter-based random numbers: batch-invariant by construction (DASBE spec §2.6).

Every number is a pure function of ``(seed, stream, image_id, step, element index)``. Nothing is
carried from one call to the next, so an image gets the same noise whether it runs alone, at position
0 of a batch of 512, or at position 300; that is what makes spike records bit-identical for any
batch size (spec §11 item 9).

The hash is splitmix64's output function (Steele, Lea & Flood 2014) written in torch int64 ops. Torch
int64 arithmetic wraps modulo 2**64, which is exactly the unsigned arithmetic the hash needs; the only
difference from unsigned code is that ``>>`` is arithmetic on signed integers, so right shifts are
masked (``_shr``). A row key absorbs seed, stream, image id and step; element ``i`` of the row is then
``mix(row_key + (i + 1) * GOLDEN)``, i.e. the splitmix64 sequence started at the row key.

Uniform floats keep the top 24 bits: ``float32`` values ``k / 2**24`` in ``[0, 1)``, exact in float32,
so the same bits give the same float on every device.

Streams (the ``Stream`` enum) keep the uses apart, so adding draws to one use never shifts another:

* ``INIT``       delay-line initialisation (Box-Muller normals), step = 0
* ``THRESHOLD``  the stochastic threshold noise U(0, 1) of the pixel neurons, step = global step n
* ``MASK1``      Bernoulli mask that decays s(n) into s1 (coincidence window), step = n
* ``MASK2``      Bernoulli mask that decays s1 into s2, step = n
* ``KMEANS``     k-means++ seeding in the readout, step = (init run, centre index)
* ``DROPOUT``    free for training-time pixel dropout
"""

from __future__ import annotations

import enum
from typing import Union

import torch

IntOrTensor = Union[int, torch.Tensor]


def _signed(value: int) -> int:
    """A 64-bit unsigned constant as the signed int64 with the same bits."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN = _signed(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: splitmix64's increment
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)
_FLOAT24 = 1.0 / (1 << 24)


class Stream(enum.IntEnum):
    """Independent random streams; the value is hashed into every key."""

    INIT = 1
    THRESHOLD = 2
    MASK1 = 3
    MASK2 = 4
    KMEANS = 5
    DROPOUT = 6
    HIDDEN = 7  # spiking hidden layers of DAEs in the binding loop
    ENCODE = 8  # Bernoulli ("Poisson") input encodings


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic and would copy the sign bit)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser: a bijection on 64-bit words with full avalanche."""
    return mix64_(z.clone())


def mix64_(z: torch.Tensor) -> torch.Tensor:
    """In-place ``mix64`` (3x faster on large tensors: no fresh allocation per operation)."""
    tmp = torch.empty_like(z)
    for shift, mul in ((30, _MUL1), (27, _MUL2), (31, None)):
        torch.bitwise_right_shift(z, shift, out=tmp)
        tmp &= (1 << (64 - shift)) - 1  # logical shift: drop the copied sign bits
        z ^= tmp
        if mul is not None:
            z *= mul
    return z


def _as_int64(value: IntOrTensor, device: torch.device | None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.dtype == torch.bool:
            raise TypeError(f"random-key fields must be integers, got a {value.dtype} tensor")
        return value.to(device=device, dtype=torch.int64)
    return torch.tensor(_signed(int(value)), dtype=torch.int64, device=device)


def _absorb(key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # Hash the field on its own first so that nearby values (ids 0, 1, 2 ...) land far apart.
    return mix64(key ^ mix64(value * GOLDEN + GOLDEN))


def row_keys(seed: IntOrTensor, stream: int, image_ids: IntOrTensor, step: IntOrTensor,
             device: torch.device | str | None = None) -> torch.Tensor:
    """One 64-bit key per row, broadcasting ``seed``, ``image_ids`` and ``step`` (ints or 1-D tensors)."""
    device = torch.device(device) if device is not None else _device_of(seed, image_ids, step)
    key = mix64(_as_int64(seed, device) * GOLDEN + _signed(int(stream)))
    key = _absorb(key, _as_int64(image_ids, device))
    key = _absorb(key, _as_int64(step, device))
    return key.reshape(-1) if key.dim() else key.reshape(1)


def _device_of(*values: IntOrTensor) -> torch.device:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def random_bits(keys: torch.Tensor, n: int) -> torch.Tensor:
    """``[R, n]`` 64-bit words: element ``i`` of row ``r`` is ``mix64(keys[r] + (i + 1) * GOLDEN)``."""
    offsets = torch.arange(1, n + 1, dtype=torch.int64, device=keys.device) * GOLDEN
    return mix64_(keys[:, None] + offsets[None, :])


def bits_to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """Top 24 bits of each word as float32 in [0, 1) (exactly representable, device independent)."""
    return _shr(bits, 40).to(torch.float32).mul_(_FLOAT24)


def uniform(seed: IntOrTensor, stream: int, image_ids: IntOrTensor, step: IntOrTensor, n: int,
            device: torch.device | str | None = None) -> torch.Tensor:
    """``[R, n]`` float32 uniforms in [0, 1), one row per (broadcast) ``seed`` x ``image_ids`` x ``step``.

    Example: ``uniform(7, Stream.THRESHOLD, torch.tensor([3, 9]), 120, 400)`` gives the threshold
    noise of images 3 and 9 at step 120; image 9 gets the same row in any other batch.
    """
    return bits_to_uniform(random_bits(row_keys(seed, stream, image_ids, step, device), n))


def bernoulli(p: float, seed: IntOrTensor, stream: int, image_ids: IntOrTensor, step: IntOrTensor,
              n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[R, n]`` bool, True with probability ``p`` (resolution 2**-24; p = 0.5 is exact)."""
    return uniform(seed, stream, image_ids, step, n, device) < p


def half_normal(seed: IntOrTensor, stream: int, image_ids: IntOrTensor, step: IntOrTensor, n: int,
                device: torch.device | str | None = None) -> torch.Tensor:
    """``[R, n]`` float32 samples of ``|N(0, 1)|`` by Box-Muller from two halves of one counter row.

    The transcendental functions run in float64 and are rounded once to float32: float32 ``log``/``cos``
    may differ in the last bit between vectorised and scalar code paths (which depend on the tensor
    size), float64 rounded to float32 practically never does.
    """
    u = uniform(seed, stream, image_ids, step, 2 * n, device).to(torch.float64)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:, :n]))  # 1 - u in (0, 1], so the log is finite
    return (radius * torch.cos(2.0 * torch.pi * u[:, n:]).abs()).to(torch.float32)


def uniform_at(keys: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``uniform(...)[rows, cols]`` without computing the rest of the ``[R, n]`` block.

    ``keys`` are the ``row_keys`` of the block. Counter-based numbers can be evaluated anywhere, so a
    loop that needs noise only where a few neurons spiked hashes just those positions.
    """
    bits = mix64_(keys[rows] + (cols.to(torch.int64) + 1) * GOLDEN)
    return bits_to_uniform(bits)
