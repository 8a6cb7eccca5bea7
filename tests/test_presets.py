"""DAE presets: the spec §5 table, training runs with checkpoints and resume, and the shipped weights."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from workbench.checkpoints import CheckpointError, load_checkpoint, load_dae
from workbench.data.bars import single_bars
from workbench.data.datasets import DATASETS
from workbench.data.moving_shapes import generate_moving_shapes
from workbench.data.sprites import CORNER, SQUARE, TRIANGLE
from workbench.data.store import DatasetNotFoundError, write_splits
from workbench.models.dae import DASBE_LR_STEPS, MLPDAE
from workbench.models.presets import DAE_PRESETS, TrainResult, build_dae, shipped_checkpoint, train_preset
from workbench.models.rbae import RBAE
from workbench.models.spiking_dae import SpikingDAE


@pytest.fixture(scope="module")
def singles_file(tmp_path_factory):
    """A small Bars-like file: 60 single bars as train_single, plus one split per bar direction."""
    images, labels = single_bars(60, seed=0)
    hori = np.zeros((40, 20, 20), np.uint8)
    vert = np.zeros((40, 20, 20), np.uint8)
    for i in range(40):
        hori[i, i % 20, :] = 1
        vert[i, :, (3 * i) % 20] = 1
    path = tmp_path_factory.mktemp("data") / "bars_small.h5"
    return write_splits(path, {"train_single": (images, labels), "train_single_hori": (hori, hori),
                               "train_single_vert": (vert, vert)})


def test_table_matches_the_spec():
    assert set(DAE_PRESETS) == {"bars", "corners", "shapes", "mnist_shape", "multi_mnist", "clrnet", "rbae"}
    p = DAE_PRESETS
    assert p["bars"].sizes == (400, 256, 400) and p["corners"].sizes == (784, 256, 784)
    assert p["shapes"].sizes == (784, 512, 400, 512, 784) and p["mnist_shape"].sizes == (784, 250, 784)
    for name in ("bars", "corners", "shapes", "mnist_shape"):
        assert p[name].hidden_act == "sigmoid" and p[name].loss == "bce" and p[name].lr_steps == DASBE_LR_STEPS
        assert p[name].max_epochs == 300 and p[name].patience == 40 and p[name].splits == ("train_single",)
    assert p["corners"].batch_size == p["shapes"].batch_size == 1024 and p["bars"].batch_size == 32
    assert p["shapes"].dropout == (0.6, 0.8) and p["mnist_shape"].dropout == 0.6 and p["mnist_shape"].lr == 0.031685
    mm = p["multi_mnist"]
    assert (mm.model, mm.sizes, mm.lr, mm.lr_steps, mm.batch_size, mm.max_epochs, mm.refractory) == \
        ("SpikingDAE", (2304, 1000, 500, 1000, 2304), 1e-4, ((50, 0.1), (80, 0.1)), 128, 200, 12)
    clr = p["clrnet"]
    assert clr.sizes == (784, 600, 400, 350, 1600, 350, 400, 600, 784) and clr.patience == 100
    assert clr.splits == ("train_single_0", "train_single_1", "train_single_2") and clr.max_epochs == 500
    assert p["rbae"].model == "RBAE" and p["rbae"].lr_steps == ((60, 0.1), (150, 0.1)) and p["rbae"].patience == 20


def test_every_preset_names_a_registered_dataset_and_its_splits():
    for preset in DAE_PRESETS.values():
        info = DATASETS[preset.dataset]
        assert tuple(info.image_shape) == preset.image_shape
        assert set(preset.splits) <= set(info.layout()), preset.name


def test_build_dae_gives_the_preset_architecture():
    dae = build_dae("shapes", seed=0)
    assert isinstance(dae, MLPDAE) and dae.sizes == (784, 512, 400, 512, 784)
    assert isinstance(build_dae("clrnet", seed=0), SpikingDAE) and isinstance(build_dae("rbae", seed=0), RBAE)
    a, b = build_dae("bars", seed=3), build_dae("bars", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="unknown DAE preset 'cifar'"):
        build_dae("cifar")
    with pytest.raises(ValueError, match="input size"):
        replace(DAE_PRESETS["bars"], image_shape=(28, 28))


def test_train_preset_writes_best_last_and_history(singles_file, tmp_path):
    result = train_preset("bars", singles_file, tmp_path / "run", epochs=6, progress=False)
    assert isinstance(result, TrainResult) and result.epochs_run == 6 and result.seconds > 0
    best, last = load_checkpoint(result.best_path), load_checkpoint(result.last_path)
    assert best.train_state is None and set(last.train_state) == {"optimizer", "rng"}
    assert best.config == last.config and best.config["preset"] == "bars" and best.config["seed"] == 0
    assert best.extra["epoch"] == result.best_epoch and best.extra["val_loss"] == result.best_val_loss
    assert last.extra["epoch"] == 5
    history = json.loads(result.history_path.read_text())
    assert len(history["val_loss"]) == 6 and history["best_epoch"] == result.best_epoch
    assert min(history["val_loss"]) == result.best_val_loss
    # best.pt holds the best epoch's weights: recompute its validation score (last 10 %, clean input).
    images, _ = single_bars(60, seed=0)
    val = torch.as_tensor(images[54:].reshape(6, -1), dtype=torch.float32)
    with torch.no_grad():
        score = float(F.binary_cross_entropy(load_dae(result.best_path)(val)[0], val))
    assert score == pytest.approx(result.best_val_loss, rel=1e-5)


def test_resume_gives_the_same_run_as_an_uninterrupted_one(singles_file, tmp_path):
    straight = train_preset("bars", singles_file, tmp_path / "a", epochs=5, seed=1, progress=False)
    train_preset("bars", singles_file, tmp_path / "b", epochs=2, seed=1, progress=False)
    resumed = train_preset("bars", singles_file, tmp_path / "b", epochs=5, seed=1, progress=False, resume=True)
    assert resumed.epochs_run == 5 and resumed.best_epoch == straight.best_epoch
    a, b = load_checkpoint(straight.last_path), load_checkpoint(resumed.last_path)
    assert a.extra["history"]["val_loss"] == b.extra["history"]["val_loss"]
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    with pytest.raises(CheckpointError, match="different run.*seed"):
        train_preset("bars", singles_file, tmp_path / "b", epochs=6, seed=2, progress=False, resume=True)


def test_early_stopped_run_does_not_continue_on_resume(singles_file, tmp_path):
    frozen = replace(DAE_PRESETS["bars"], lr=0.0, patience=2)
    first = train_preset(frozen, singles_file, tmp_path, epochs=50, progress=False)
    assert first.stopped_early and first.epochs_run == 4 and first.best_epoch == 0
    again = train_preset(frozen, singles_file, tmp_path, epochs=50, progress=False, resume=True)
    assert again.epochs_run == 4


def test_data_errors_name_the_fix(singles_file, tmp_path):
    with pytest.raises(ValueError, match="holds 20x20 images but preset 'corners' expects 28x28"):
        train_preset("corners", singles_file, tmp_path, epochs=1, progress=False)
    with pytest.raises(DatasetNotFoundError, match=r"make_dataset\('shapes'\)"):
        train_preset("shapes", tmp_path / "missing.h5", tmp_path, epochs=1, progress=False)
    with pytest.raises(ValueError, match="no split 'train_single_0'"):
        train_preset(replace(DAE_PRESETS["clrnet"], sizes=(400, 8, 400), image_shape=(20, 20)), singles_file,
                     tmp_path, epochs=1, progress=False)


def test_small_bcdae_and_clrnet_runs(singles_file, tmp_path):
    bc = replace(DAE_PRESETS["multi_mnist"], sizes=(400, 24, 12, 24, 400), image_shape=(20, 20), batch_size=16)
    result = train_preset(bc, singles_file, tmp_path / "bc", epochs=2, progress=False)
    dae = load_dae(result.best_path)
    assert isinstance(dae, SpikingDAE) and dae.refractory == 12 and np.isfinite(result.best_val_loss)
    clr = replace(DAE_PRESETS["clrnet"], sizes=(400, 24, 16, 24, 400), image_shape=(20, 20), batch_size=8,
                  splits=("train_single_hori", "train_single_vert"))
    result = train_preset(clr, singles_file, tmp_path / "clr", epochs=2, progress=False)
    history = json.loads(result.history_path.read_text())
    assert result.epochs_run == 2 and all(np.isfinite(history["train_loss"]))
    assert load_dae(result.best_path).hidden_act == "sigmoid"


def test_small_rbae_run_on_sequences(tmp_path):
    scenes = generate_moving_shapes(10, np.random.RandomState(0), frames=12, max_objects=1)
    images, labels = scenes[0], scenes[1]
    path = write_splits(tmp_path / "moving.h5", {"train_single": (images.reshape(-1, 28, 28),
                                                                  labels.reshape(-1, 28, 28))},
                        attrs={"frames": 12})
    small = replace(DAE_PRESETS["rbae"], sizes=(784, 32, 16), batch_size=4)
    result = train_preset(small, path, tmp_path / "run", epochs=3, progress=False)
    history = json.loads(result.history_path.read_text())
    assert result.epochs_run == 3 and history["train_loss"][-1] < history["train_loss"][0]
    assert isinstance(load_dae(result.best_path), RBAE)


# --- shipped checkpoints ----------------------------------------------------------------------------


def _paint(sprite, top, left, shape=(28, 28)):
    image = np.zeros(shape, np.float32)
    image[top:top + sprite.shape[0], left:left + sprite.shape[1]] = sprite
    return image.reshape(-1)


def _probes(name):
    if name == "bars":
        x = np.zeros((40, 20, 20), np.float32)
        for i in range(20):
            x[i, i, :] = 1
            x[20 + i, :, i] = 1
        return x.reshape(40, -1)
    if name == "corners":
        return np.stack([_paint(CORNER, 3, 4), _paint(CORNER[::-1], 20, 11), _paint(CORNER[:, ::-1], 9, 17)])
    if name == "shapes":
        return np.stack([_paint(SQUARE, 2, 3), _paint(TRIANGLE, 15, 10), _paint(TRIANGLE[::-1], 8, 14)])
    return None


def test_shipped_checkpoint_lookup():
    with pytest.raises(ValueError, match="unknown DAE preset"):
        shipped_checkpoint("cifar")
    for name in DAE_PRESETS:
        path = shipped_checkpoint(name)
        assert path is None or (path.name == f"dasbe_{name}.pt" and path.is_file())


@pytest.mark.parametrize("name", ["bars", "corners", "shapes", "mnist_shape"])
def test_shipped_weights_load_and_reconstruct_single_objects(name):
    path = shipped_checkpoint(name)
    if path is None:
        pytest.skip(f"no shipped checkpoint for {name}")
    ckpt = load_checkpoint(path)
    assert ckpt.train_state is None and ckpt.config["preset"] == name
    assert ckpt.extra["epoch"] == ckpt.extra["best_epoch"]
    dae = load_dae(path)
    assert dae.sizes == DAE_PRESETS[name].sizes
    probes = _probes(name)
    if probes is not None:
        x = torch.as_tensor(probes)
        with torch.no_grad():
            recon = dae(x)[0]
        assert ((recon > 0.5) == (x > 0.5)).float().mean() > 0.98


def test_preset_with_changes_only_the_named_ingredients():
    from workbench.models.presets import preset_with

    base = DAE_PRESETS["corners"]
    assert preset_with("corners") is base
    ablated = preset_with("corners", lr=0.1, batch_size=96, hidden=100)
    assert (ablated.lr, ablated.batch_size, ablated.sizes) == (0.1, 96, (784, 100, 784))
    assert replace(ablated, lr=base.lr, batch_size=base.batch_size, sizes=base.sizes) == base
    with pytest.raises(ValueError, match="one-hidden-layer"):
        preset_with("shapes", hidden=100)
    with pytest.raises(ValueError, match="lr must be"):
        preset_with("corners", lr=float("nan"))
    with pytest.raises(ValueError, match="batch_size must be"):
        preset_with("corners", batch_size=0)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1, got True"):
        preset_with("corners", hidden=True)
    assert preset_with("multi_mnist", dropout=0.9).dropout == 0.9  # a fixed p replaces a fixed p
    assert preset_with("corners", dropout=0.5).dropout == 0.5  # and a per-batch range
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="dropout must be"):
            preset_with("corners", dropout=bad)


def test_ablation_run_records_its_recipe_and_cannot_be_shipped(singles_file, tmp_path, capsys):
    from workbench.models.presets import main

    main(["bars", "--data", str(singles_file), "--out", str(tmp_path / "run"), "--epochs", "2", "--no-progress",
          "--lr", "0.05", "--hidden", "32"])
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.config["training"]["lr"] == 0.05 and ckpt.config["kwargs"]["sizes"] == [400, 32, 400]
    assert ckpt.state_dict["encoder.0.weight"].shape == (32, 400)
    with pytest.raises(SystemExit):
        main(["bars", "--data", str(singles_file), "--out", str(tmp_path / "x"), "--lr", "0.05", "--ship"])
    assert "--ship writes the preset's own recipe" in capsys.readouterr().err


def test_export_in_float16_halves_the_file_and_loads_as_float32(tmp_path):
    from workbench.checkpoints import model_config, save_checkpoint
    from workbench.models.presets import export_checkpoint

    net = build_dae("clrnet", seed=0)
    src = save_checkpoint(tmp_path / "best.pt", net, model_config(net, preset="clrnet"), extra={"epoch": 7},
                          train_state={"note": "dropped on export"})
    half = export_checkpoint(src, tmp_path / "half.pt", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * export_checkpoint(src, tmp_path / "full.pt").stat().st_size
    ckpt = load_checkpoint(half)
    assert ckpt.extra == {"epoch": 7, "stored_dtype": "float16"} and ckpt.train_state is None
    loaded = load_dae(half)
    for key, value in net.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == value.dtype and torch.equal(got, value.half().to(value.dtype))
    with pytest.raises(ValueError, match="floating-point"):
        export_checkpoint(src, tmp_path / "int.pt", dtype=torch.int8)
