"""Synthetic datasets (DASBE spec §4, §11 item 1; GUST spec §3, §10 item 1): sprites, bit-exact hashes,
statistics, split order, the MNIST-based generators on a synthetic stand-in, moving shapes, the registry and
the HDF5 builder."""

import hashlib

import h5py
import numpy as np
import pytest

from workbench.data import corners, multi_mnist, shapes
from workbench.data.datasets import DATASETS, collect_splits, dataset_info, dataset_path, make_dataset
from workbench.data.mnist import Mnist, MnistUnavailableError
from workbench.data.mnist_shape import generate_digit_only, generate_mnist_shape, generate_shape_only
from workbench.data.moving_shapes import DIRECTIONS, generate_moving_shapes, read_sequences
from workbench.data.multi_mnist import DigitSprites, generate_single_digits, place_digits
from workbench.data.sprites import (
    CORNER,
    CORNERS_SQUARE,
    INVERTED_TRIANGLE,
    SHAPES,
    SQUARE,
    TRIANGLE,
    Canvas,
    corner,
    paint_sprites,
)
from workbench.data.store import list_splits, read_attrs, read_overlap, read_split


def sha16(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).hexdigest()[:16]


def visible_objects(labels: np.ndarray) -> np.ndarray:
    flat = labels.reshape(labels.shape[0], -1)
    return np.array([np.count_nonzero(np.bincount(row)[1:]) for row in flat])


# --- sprites and the painter ---------------------------------------------------------------------


def test_sprite_pixel_counts_and_shapes():
    assert SQUARE.shape == (7, 7) and SQUARE.sum() == 40 and not SQUARE[2:5, 2:5].any()
    assert TRIANGLE.shape == (7, 12) and TRIANGLE.sum() == 48
    assert TRIANGLE[0].tolist() == [False] * 5 + [True] * 2 + [False] * 5 and TRIANGLE[-2:].all()
    assert np.array_equal(INVERTED_TRIANGLE, TRIANGLE[::-1])
    assert CORNER.shape == (5, 5) and CORNER.sum() == 16 and CORNER[0].all() and CORNER[:, 0].all()
    assert np.array_equal(corner(1), CORNER[::-1]) and np.array_equal(corner(2), CORNER[:, ::-1])
    assert np.array_equal(corner(3), CORNER[::-1, ::-1])
    assert CORNERS_SQUARE.shape == (20, 20) and CORNERS_SQUARE.sum() == 64
    assert not CORNERS_SQUARE[5:15, :].any() and not CORNERS_SQUARE[:, 5:15].any()  # 10-px gaps mid-side
    assert np.array_equal(CORNERS_SQUARE[15:, 15:], corner(3)) and np.array_equal(CORNERS_SQUARE[15:, :5], corner(1))
    with pytest.raises(ValueError, match="orientation"):
        corner(4)
    with pytest.raises(ValueError):
        SQUARE[0, 0] = False  # shared constants are read-only


def test_painter_overlap_rule_and_last_writer_label():
    # two squares overlapping on a 4x4 patch: the later one's label wins, the overlap goes to 0
    scenes = paint_sprites((12, 12), SHAPES, kinds=[[0, 0]], ys=[[0, 3]], xs=[[0, 3]])
    cover = np.zeros((12, 12), int)
    cover[0:7, 0:7] += SQUARE
    cover[3:10, 3:10] += SQUARE
    assert np.array_equal(scenes.images[0], cover > 0)
    assert np.array_equal(scenes.overlap[0], cover > 1)
    assert (scenes.labels[0][cover > 1] == 0).all()
    only_second = np.zeros((12, 12), bool)
    only_second[3:10, 3:10] = SQUARE
    assert (scenes.labels[0][only_second & (cover == 1)] == 2).all()
    assert scenes.images.dtype == scenes.labels.dtype == np.uint8 and scenes.overlap.dtype == bool


def test_painter_rejects_objects_outside_the_image():
    with pytest.raises(ValueError, match="outside"):
        paint_sprites((28, 28), SHAPES, kinds=[[1]], ys=[[0]], xs=[[17]])  # 12 wide at x=17 ends at column 28
    canvas = Canvas(1, (4, 4), pad=3)
    window = np.zeros((1, 3, 3), bool)
    window[0, 0, 0] = True  # the on pixel lands at (-1, -1), outside the image
    canvas.stamp([0], window, [-1], [-1], 1)
    with pytest.raises(ValueError, match="outside the image"):
        canvas.finish()


# --- bit-exact Shapes (DASBE and GUST) -----------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_60000():
    return shapes.generate_shapes(60000, np.random.RandomState(shapes.SHAPES_SEED))


def test_shapes_hashes_match_the_authors(shapes_60000):
    s = shapes_60000
    assert s.images.shape == (60000, 28, 28) and s.images.dtype == np.uint8
    assert sha16(s.images[:6000]) == "2aa3199c735f3c21"
    assert sha16(s.labels[:6000]) == "f5549d9604b69da1"
    assert sha16(s.images) == "6f1340ca5c08958d"


def test_shapes_statistics(shapes_60000):
    images, labels = shapes_60000.images[:6000], shapes_60000.labels[:6000]
    on = images.reshape(6000, -1).sum(1)
    assert on.mean() == pytest.approx(125.3, abs=0.05) and on[0] == 128
    assert (labels > 0).reshape(6000, -1).sum(1).mean() == pytest.approx(115.1, abs=0.05)
    assert (visible_objects(labels) == 3).sum() == 5986
    assert np.array_equal(shapes_60000.overlap[:6000], (images == 1) & (labels == 0))


def test_gust_3_3_file_is_bit_exact_and_image_10_matches():
    splits = collect_splits("shapes_multiobj_3_3", sizes={"train_single_1": 0, "train_single_2": 0})
    assert {k: v.n for k, v in splits.items()} == {"train_multi": 20000, "test": 10000, "train_single": 20000,
                                                    "train_single_0": 20000, "train_single_1": 0, "train_single_2": 0}
    train, test = splits["train_multi"], splits["test"]
    assert (sha16(train.images), sha16(train.labels)) == ("ab44574c0bc89428", "eb450c65bbd3e701")
    assert (sha16(test.images), sha16(test.labels)) == ("99dfaf324f5fa927", "221475d17f312ff7")
    assert sha16(splits["train_single_0"].images) == "d10046a2a0345478"
    assert sha16(train.images[:6000]) == "2aa3199c735f3c21"
    # train_single is multi-object in the authors' files
    assert visible_objects(splits["train_single"].labels[:200]).mean() > 2.9
    assert (splits["train_single_0"].images.reshape(20000, -1).sum(1) == 40).all()
    # image 10, used by every GUST figure
    img, lab, ovl = train.images[10], train.labels[10], train.overlap[10]
    assert img.sum() == 124 and ovl.sum() == 12 and (lab > 0).sum() == 112
    rows, cols = np.nonzero(lab == 3)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 9, 14, 25)
    assert np.array_equal(lab[3:10, 14:26] == 3, TRIANGLE)
    rows, cols = np.nonzero(lab == 1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (19, 25, 15, 26)
    rows, cols = np.nonzero((lab == 2) | ovl)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (21, 27, 19, 25)


def test_gust_statistics_3_3(shapes_60000):
    images, labels, overlap = (a[:20000].reshape(20000, -1) for a in shapes_60000)
    on = images.sum(1)
    assert on.mean() == pytest.approx(125.3, abs=0.05) and (on.min(), on.max()) == (59, 144)
    assert overlap.sum(1).mean() == pytest.approx(10.3, abs=0.05)
    assert (overlap.any(1).mean()) == pytest.approx(0.71, abs=0.005)
    assert (visible_objects(labels) == 3).mean() == pytest.approx(0.997, abs=0.0005)


def test_multiobj_object_counts_and_shared_test_sets():
    a = collect_splits("shapes_multiobj_2_3", sizes={"train_multi": 30, "test": 20, "train_single": 5,
                                                     "train_single_0": 0, "train_single_1": 0, "train_single_2": 0})
    assert visible_objects(a["train_multi"].labels).max() == 2 and visible_objects(a["test"].labels).max() == 3
    assert visible_objects(a["train_single"].labels).max() == 2
    b = collect_splits("shapes_multiobj_3_2", sizes={"train_multi": 30, "test": 20, "train_single": 0,
                                                     "train_single_0": 0, "train_single_1": 0, "train_single_2": 0})
    c = collect_splits("shapes_multiobj_3_4", sizes={"train_multi": 30, "test": 0, "train_single": 0,
                                                     "train_single_0": 0, "train_single_1": 0, "train_single_2": 0})
    assert np.array_equal(b["train_multi"].images, c["train_multi"].images)  # same seed, same training draws
    assert dataset_info("shapes_multiobj_5_1").sizes["train_multi"] == 20000
    with pytest.raises(KeyError, match="unknown dataset"):
        dataset_info("shapes_multiobj_0_3")


def test_single_shapes_draw_only_x_then_y():
    rng, replay = np.random.RandomState(7), np.random.RandomState(7)
    single = shapes.generate_single_shapes(5, rng, 1)
    for i in range(5):
        x, y = replay.randint(0, 17), replay.randint(0, 22)
        assert np.array_equal(single.labels[i, y:y + 7, x:x + 12], TRIANGLE.astype(np.uint8))
        assert single.images[i].sum() == 48
    assert rng.randint(1 << 30) == replay.randint(1 << 30)


# --- bit-exact Corners ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corners_60000():
    return corners.generate_corners(60000, np.random.RandomState(corners.CORNERS_SEED))


def test_corners_hashes_match_the_authors(corners_60000):
    c = corners_60000
    assert sha16(c.images[:6000]) == "e16a62e0bc970471"
    assert sha16(c.labels[:6000]) == "9ceb11b5cb9d839b"
    assert sha16(c.images) == "500d7cf5d3efb3f0"


def test_corners_statistics(corners_60000):
    images, labels = corners_60000.images[:6000], corners_60000.labels[:6000]
    on = images.reshape(6000, -1).sum(1)
    assert on.mean() == pytest.approx(120.6, abs=0.05) and on[0] == 107
    assert (labels > 0).reshape(6000, -1).sum(1).mean() == pytest.approx(113.4, abs=0.05)
    assert (visible_objects(labels) == 5).sum() == 5940


def test_corners_call_order_square_then_x_y_orientation():
    rng, replay = np.random.RandomState(11), np.random.RandomState(11)
    scenes = corners.generate_corners(3, rng)
    for i in range(3):
        x, y = replay.randint(0, 9), replay.randint(0, 9)
        assert (scenes.images[i, y:y + 20, x:x + 20] >= CORNERS_SQUARE).all()
        for label in range(2, 6):
            x, y, o = replay.randint(0, 24), replay.randint(0, 24), replay.randint(0, 4)
            patch = scenes.labels[i, y:y + 5, x:x + 5]
            assert ((patch == label) <= corner(o)).all()  # visible pixels of this corner sit on its sprite
    assert rng.randint(1 << 30) == replay.randint(1 << 30)


def test_corners_single_set_is_squares_then_corners_shuffled():
    n = 70
    single = collect_splits("corners", sizes={"train_multi": 3, "test": 2, "train_single": n})["train_single"]
    rng = np.random.RandomState(corners.CORNERS_SEED)
    corners.generate_corners(5, rng)
    square = corners.generate_corners(10, rng, n_corners=0)
    loose = corners.generate_corners(60, rng, with_square=False, n_corners=1)
    order = np.arange(n)
    rng.shuffle(order)
    assert np.array_equal(single.images, np.concatenate([square.images, loose.images])[order])
    counts = single.images.reshape(n, -1).sum(1)
    assert (counts == 64).sum() == 10 and (counts == 16).sum() == 60
    assert set(np.unique(single.labels)) == {0, 1}


# --- Bars through the registry -------------------------------------------------------------------


def test_bars_file_layout_and_single_copies(tmp_path):
    path = make_dataset("bars", tmp_path / "b.h5", sizes={"train_multi": 40, "test": 10, "train_single": 20},
                        progress=False)
    assert list_splits(path) == {"train_multi": (40, 20, 20), "test": (10, 20, 20), "train_single": (20, 20, 20),
                                 "train_single_hori": (10, 20, 20), "train_single_vert": (10, 20, 20)}
    images, labels = read_split(path, "train_multi")
    assert sha16(images) == sha16(collect_splits("bars", sizes={"train_multi": 40, "test": 0, "train_single": 0})
                                  ["train_multi"].images)
    assert np.array_equal(read_overlap(path, "train_multi"), (images == 1) & (labels == 0))
    assert (read_overlap(path, "train_multi").reshape(40, -1).sum(1) == 36).all()  # 6 x 6 crossings
    hori, _ = read_split(path, "train_single_hori")
    assert (hori.sum(axis=2).max(axis=1) == 20).all()


# --- MNIST-based datasets on a synthetic stand-in ------------------------------------------------


def blob_digits(m: int, seed: int) -> np.ndarray:
    """Stand-in digits: grey ellipses of random size and place in 28x28, with faint (< 0.5) rims."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    digits = np.zeros((m, 28, 28), np.uint8)
    for i in range(m):
        cy, cx = rng.uniform(8, 20, 2)
        ry, rx = rng.uniform(4, 9), rng.uniform(2, 7)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        digits[i] = np.where(d < 0.6, 255, np.where(d < 1.0, 100, 0))  # core >= 0.5, rim < 0.5 (not binarised in)
    return digits


@pytest.fixture(scope="module")
def stand_in():
    train, test = blob_digits(50, 1), blob_digits(20, 2)
    return Mnist.from_arrays(train, np.arange(50) % 10, test, np.arange(20) % 10)


def paint_reference(shape, parts):
    """Literal per-image painter: parts = [(mask, y, x, label)], coverage / last writer / overlap -> 0."""
    cover = np.zeros(shape, int)
    labels = np.zeros(shape, int)
    for mask, y, x, label in parts:
        h, w = mask.shape
        cover[y:y + h, x:x + w] += mask
        labels[y:y + h, x:x + w][mask] = label
    labels[cover > 1] = 0
    return (cover > 0).astype(np.uint8), labels.astype(np.uint8)


def test_byte_thresholds_equal_the_specs_float_rules():
    every_byte = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    padded = np.zeros((1, 28, 28), np.uint8)
    padded[0, :16, :16] = every_byte
    assert np.array_equal(DigitSprites(padded).masks[0, :16, :16], every_byte[0] / 255.0 >= 0.5)
    scenes = generate_digit_only(1, np.random.RandomState(0), padded)
    assert np.array_equal(scenes.images[0, :16, :16], every_byte[0] / 255.0 > 0.5)


def test_digit_sprites_box_is_nonzero_bbox_and_mask_is_binarised():
    digits = np.zeros((1, 28, 28), np.uint8)
    digits[0, 5, 6] = 10  # faint pixel: inside the box, off in the mask
    digits[0, 9:12, 8:10] = 200
    digits[0, 12, 9] = 127  # 127/255 < 0.5
    digits[0, 13, 9] = 128  # 128/255 >= 0.5
    s = DigitSprites(digits)
    assert (s.r0[0], s.c0[0], s.h[0], s.w[0]) == (5, 6, 9, 4)
    crop = s.crop(0)
    assert crop.shape == (9, 4) and crop.sum() == 7 and crop[8, 3] and not crop[7, 3] and not crop[0, 0]


def test_multi_mnist_placements_replay_the_call_order_and_satisfy_the_overlap_rule():
    digits = blob_digits(30, 3)
    sprites = DigitSprites(digits)
    rng = np.random.RandomState(5)
    chosen, ys, xs = place_digits(40, rng, sprites, image_shape=(24, 24))  # small canvas: redraws are frequent
    replay = np.random.RandomState(5)
    redraws = 0
    for i in range(40):
        d = replay.randint(0, 30, 3)
        assert np.array_equal(d, chosen[i])
        crops = [sprites.crop(k) for k in d]
        while True:
            pos = [(replay.randint(0, 24 - c.shape[1] + 1), replay.randint(0, 24 - c.shape[0] + 1)) for c in crops]
            union = np.zeros((24, 24), bool)
            for c, (x, y) in zip(crops[:2], pos[:2]):
                union[y:y + c.shape[0], x:x + c.shape[1]] |= c
            (x, y), c = pos[2], crops[2]
            fraction = (union[y:y + c.shape[0], x:x + c.shape[1]] & c).sum() / c.sum()
            if fraction < 0.2:
                break
            redraws += 1
        assert [tuple(p) for p in zip(xs[i], ys[i])] == pos
    assert redraws > 10  # the accept/redraw branch was exercised
    assert rng.randint(1 << 30) == replay.randint(1 << 30)


def test_multi_mnist_images_match_a_literal_painter():
    digits = blob_digits(30, 4)
    sprites = DigitSprites(digits)
    scenes = multi_mnist.generate_multi_mnist(25, np.random.RandomState(9), digits)
    chosen, ys, xs = place_digits(25, np.random.RandomState(9), sprites)
    for i in range(25):
        parts = [(sprites.crop(d), y, x, j + 1) for j, (d, y, x) in enumerate(zip(chosen[i], ys[i], xs[i]))]
        images, labels = paint_reference((48, 48), parts)
        assert np.array_equal(scenes.images[i], images) and np.array_equal(scenes.labels[i], labels)
    assert set(np.unique(scenes.labels)) <= {0, 1, 2, 3}
    # the last digit is at least 80 % visible (labelled 3 unless covered)
    for i in range(25):
        crop = sprites.crop(chosen[i, 2])
        assert (scenes.labels[i, ys[i, 2]:ys[i, 2] + crop.shape[0], xs[i, 2]:xs[i, 2] + crop.shape[1]][crop] == 3
                ).mean() > 0.8


def test_multi_mnist_check_all_digits_is_stricter():
    digits = blob_digits(30, 3)
    sprites = DigitSprites(digits)
    chosen, ys, xs = place_digits(30, np.random.RandomState(2), sprites, image_shape=(26, 26), check_all_digits=True)
    for i in range(30):
        crops = [sprites.crop(d) for d in chosen[i]]
        first = np.zeros((26, 26), bool)
        first[ys[i, 0]:ys[i, 0] + crops[0].shape[0], xs[i, 0]:xs[i, 0] + crops[0].shape[1]] |= crops[0]
        second = first[ys[i, 1]:ys[i, 1] + crops[1].shape[0], xs[i, 1]:xs[i, 1] + crops[1].shape[1]] & crops[1]
        assert second.sum() / crops[1].sum() < 0.2


def test_single_digits_use_index_order_and_x_then_y():
    digits = blob_digits(10, 5)
    sprites = DigitSprites(digits)
    scenes = generate_single_digits(np.arange(15) % 10, np.random.RandomState(3), digits)
    replay = np.random.RandomState(3)
    for i in range(15):
        d = i % 10
        x, y = replay.randint(0, 48 - sprites.w[d] + 1), replay.randint(0, 48 - sprites.h[d] + 1)
        images, labels = paint_reference((48, 48), [(sprites.crop(d), y, x, 1)])
        assert np.array_equal(scenes.images[i], images) and np.array_equal(scenes.labels[i], labels)


def test_mnist_shape_digit_then_shape():
    digits = blob_digits(12, 6)
    scenes = generate_mnist_shape(np.arange(12), np.random.RandomState(4), digits)
    replay = np.random.RandomState(4)
    for i in range(12):
        s = replay.randint(0, 3)
        h, w = SHAPES[s].shape
        x, y = replay.randint(0, 28 - w + 1), replay.randint(0, 28 - h + 1)
        digit = digits[i] / 255.0 > 0.5
        images, labels = paint_reference((28, 28), [(digit, 0, 0, 1), (SHAPES[s], y, x, 2)])
        assert np.array_equal(scenes.images[i], images) and np.array_equal(scenes.labels[i], labels)
        assert np.array_equal(scenes.overlap[i], digit & (labels == 0) & (images == 1))
    only_digit = generate_digit_only(6, np.random.RandomState(1), digits)
    assert set(np.unique(only_digit.labels)) <= {0, 1} and not only_digit.overlap.any()
    only_shape = generate_shape_only(6, np.random.RandomState(1))
    assert set(np.unique(only_shape.labels)) == {0, 2}


def test_mnist_datasets_build_from_a_stand_in(tmp_path, stand_in):
    path = make_dataset("multi_mnist", tmp_path / "mm.h5", sizes={"train_multi": 12, "test": 5, "train_single": 60},
                        mnist=stand_in, progress=False)
    assert list_splits(path) == {"train_multi": (12, 48, 48), "test": (5, 48, 48), "train_single": (60, 48, 48)}
    single, single_labels = read_split(path, "train_single")
    assert set(np.unique(single_labels)) == {0, 1}
    counts = single.reshape(60, -1).sum(1)
    binarised = (stand_in.digits("train") / 255.0 >= 0.5).reshape(50, -1).sum(1)
    assert np.array_equal(counts, binarised[np.arange(60) % 50])  # digit i mod m, whole, not shuffled
    assert read_attrs(path)["mnist_source"] == "arrays"
    path = make_dataset("mnist_shape", tmp_path / "ms.h5", sizes={"train_multi": 8, "test": 4, "train_single": 10},
                        mnist=stand_in, progress=False)
    images, labels = read_split(path, "train_multi")
    digits = stand_in.digits("train")[:8] / 255.0 > 0.5
    assert ((labels == 1) <= digits).all() and (images >= digits).all()
    _, single_labels = read_split(path, "train_single")
    kinds = [set(np.unique(lab)) - {0} for lab in single_labels]
    assert sorted(map(sorted, kinds)) == [[1]] * 5 + [[2]] * 5


def test_mnist_datasets_without_mnist_explain_how_to_get_it(tmp_path):
    with pytest.raises(MnistUnavailableError, match="hnnwb data get mnist"):
        make_dataset("multi_mnist", data_dir=tmp_path, progress=False)
    with pytest.raises(FileNotFoundError):
        make_dataset("mnist_shape", data_dir=tmp_path, progress=False)
    assert not any(tmp_path.glob("*.h5"))


# --- moving shapes -------------------------------------------------------------------------------


def literal_moving(n, seed, frames, max_objects=3, shape=None):
    """A direct per-frame re-implementation of spec §4 (positions only)."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        objs, seq = [], []
        for t in range(frames):
            if t % 15 == 0 and len(objs) < max_objects:
                s = rng.randint(0, 3) if shape is None else shape
                dx, dy = DIRECTIONS[rng.randint(0, 8)]
                h, w = SHAPES[s].shape
                x, y = rng.randint(0, 28 - w + 1), rng.randint(0, 28 - h + 1)
                objs.append({"s": s, "x": x, "y": y, "dx": dx, "dy": dy})
            seq.append([(o["s"], o["y"], o["x"]) for o in objs])
            for o in objs:
                h, w = SHAPES[o["s"]].shape
                for p, d, lim in (("x", "dx", 28 - w), ("y", "dy", 28 - h)):
                    o[p] += o[d]
                    if o[p] > lim:
                        o[p], o[d] = lim - 1, -o[d]
                    if o[p] < 0:
                        o[p], o[d] = 1, -o[d]
        out.append(seq)
    return out


def test_moving_shapes_follow_the_appearance_and_bounce_rules():
    scenes = generate_moving_shapes(3, np.random.RandomState(13), frames=120)
    assert scenes.images.shape == (3, 120, 28, 28)
    positions = literal_moving(3, 13, 120)
    for i in range(3):
        for t in range(120):
            objects = positions[i][t]
            assert len(objects) == min(3, t // 15 + 1)
            parts = [(SHAPES[s], y, x, j + 1) for j, (s, y, x) in enumerate(objects)]
            images, labels = paint_reference((28, 28), parts)
            assert np.array_equal(scenes.images[i, t], images) and np.array_equal(scenes.labels[i, t], labels)
    # shapes move one pixel per frame along each axis
    s0 = [p[0] for p in positions[0]]
    steps = {(abs(b[1] - a[1]), abs(b[2] - a[2])) for a, b in zip(s0, s0[1:])}
    assert steps and steps <= {(0, 1), (1, 0), (1, 1)}  # one pixel per axis per frame, bounces included


def test_moving_single_and_fixed_shape_sequences():
    single = generate_moving_shapes(4, np.random.RandomState(1), frames=40, max_objects=1)
    assert set(np.unique(single.labels)) == {0, 1} and not single.overlap.any()
    fixed = generate_moving_shapes(2, np.random.RandomState(1), frames=20, max_objects=1, shape=2)
    assert (fixed.images.reshape(40, -1).sum(1) == 48).all()


def test_moving_shapes_file_round_trip(tmp_path):
    sizes = {"train_multi": 3, "test": 2, "train_single": 1, "train_single_0": 1, "train_single_1": 0,
             "train_single_2": 1}
    path = make_dataset("moving_shapes_3", tmp_path / "m.h5", sizes=sizes, progress=False)
    assert read_attrs(path)["frames"] == 200
    assert list_splits(path)["train_multi"] == (600, 28, 28)
    images, labels = read_sequences(path, "train_multi", start=1, stop=3)
    expected = collect_splits("moving_shapes_3", sizes=sizes)["train_multi"]
    assert images.shape == (2, 200, 28, 28)
    assert np.array_equal(images, expected.images[1:3]) and np.array_equal(labels, expected.labels[1:3])


# --- registry and builder ------------------------------------------------------------------------


def test_registry_entries():
    for name in ("bars", "corners", "shapes", "multi_mnist", "mnist_shape", "moving_shapes_3", "moving_shapes"):
        assert name in DATASETS
    for a in (2, 3, 4):
        for b in (2, 3, 4):
            assert f"shapes_multiobj_{a}_{b}" in DATASETS
    assert DATASETS["bars"].seed == 471958 and DATASETS["corners"].seed == 746519283
    assert DATASETS["shapes"].seed == DATASETS["shapes_multiobj_3_3"].seed == 265076
    assert DATASETS["multi_mnist"].needs_mnist and DATASETS["mnist_shape"].needs_mnist
    assert not DATASETS["shapes"].needs_mnist
    assert DATASETS["multi_mnist"].sizes["train_single"] == 300000
    assert DATASETS["bars"].layout() == {"train_multi": 60000, "test": 10000, "train_single": 200,
                                         "train_single_hori": 100, "train_single_vert": 100}
    assert all(info.description for info in DATASETS.values())
    assert dataset_path("corners") == dataset_path("corners", "data") and dataset_path("x", "d").as_posix() == "d/x.h5"


def test_sizes_are_validated():
    with pytest.raises(ValueError, match="unknown split"):
        make_dataset("bars", sizes={"train": 3})
    with pytest.raises(ValueError, match=">= 0"):
        collect_splits("shapes", sizes={"test": -1})
    with pytest.raises(KeyError, match="available"):
        make_dataset("nope")


def test_written_file_matches_the_generator_and_uses_the_storage_layout(tmp_path):
    sizes = {"train_multi": 250, "test": 30, "train_single": 20, "train_single_0": 5, "train_single_1": 5,
             "train_single_2": 5}
    path = make_dataset("shapes", out=tmp_path / "s.h5", sizes=sizes, progress=False)
    images, labels = read_split(path, "train_multi")
    reference = shapes.generate_shapes(250, np.random.RandomState(265076))
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.labels)
    assert np.array_equal(read_overlap(path, "train_multi"), reference.overlap)
    with h5py.File(path) as f:
        ds = f["train_multi/default"]
        assert ds.dtype == np.uint8 and ds.chunks == (100, 28, 28) and ds.compression == "gzip"
    attrs = read_attrs(path)
    assert attrs["seed"] == 265076 and attrs["dataset"] == "shapes" and "train_single_2" in attrs["sizes"]
    # the later splits continue the same stream
    rng = np.random.RandomState(265076)
    shapes.generate_shapes(250, rng)
    test_images, _ = read_split(path, "test")
    assert np.array_equal(test_images, shapes.generate_shapes(30, rng).images)
    single = collect_splits("shapes", sizes=sizes)["train_single"]
    assert (visible_objects(single.labels) == 1).all()
