"""SNN-IIR MNIST experiment functions: splits, augmentation, resumable training, evaluation, oracles, CLI."""

import json

import numpy as np
import pytest
import torch

from workbench.data.mnist import Mnist
from workbench.experiments import snn_iir as ex

SMALL = {"sizes": (784, 24, 24, 10), "T": 8}


def _fake_mnist(n_train=5000, n_test=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n_train) % 10
    images = (rng.random((n_train, 784)) < 0.2).astype(np.uint8) * 255
    images[:, :10] = (labels[:, None] * 25).astype(np.uint8)  # a learnable hint
    return Mnist.from_arrays(images, labels, images[:n_test], labels[:n_test])


def _tiny_splits(n=96):
    m = _fake_mnist(n_train=5000)
    return {"train": ex._split(m.train_images[:n], m.train_labels[:n]),
            "val": ex._split(m.train_images[n:n + 40], m.train_labels[n:n + 40]),
            "test": ex._split(m.test_images[:40], m.test_labels[:40])}


def test_splits_full_and_smoke_are_disjoint_and_sized():
    m = _fake_mnist()
    smoke = ex.mnist_splits(m, smoke=True)
    assert [len(smoke[k]) for k in ("train", "val", "test")] == [3500, 500, 1000]
    assert torch.bincount(smoke["val"].labels).tolist() == [50] * 10
    full = ex.mnist_splits(m, val_size=1000)
    assert len(full["train"]) == 4000 and len(full["val"]) == 1000
    assert torch.equal(full["val"].images, torch.from_numpy(m.train_images[4000:]))
    assert torch.equal(full["test"].labels, torch.from_numpy(m.test_labels))


def test_augmentation_identity_settings_and_determinism():
    images = torch.rand(5, 784)
    x = images.reshape(-1, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(ex.random_resized_crop(x, g, scale=(1, 1), ratio=(1, 1)), x, atol=1e-5)
    assert torch.equal(ex.random_rotation(x, g, degrees=0.0), x)
    assert torch.equal(ex.augment(images, g, "none"), images)
    a = ex.augment(images, torch.Generator().manual_seed(1), "twice", p=1.0)
    b = ex.augment(images, torch.Generator().manual_seed(1), "twice", p=1.0)
    assert torch.equal(a, b) and not torch.allclose(a, images, atol=1e-3)
    kept = ex.augment(images, torch.Generator().manual_seed(1), "once", p=0.0)
    assert torch.equal(kept, images)


def test_rotation_turns_a_bar_and_keeps_its_mass():
    img = torch.zeros(16, 1, 28, 28)
    img[:, 0, 13:15, 4:24] = 1.0  # horizontal bar, 40 pixels
    out = ex.random_rotation(img, torch.Generator().manual_seed(0), degrees=15.0)
    changed = [not torch.equal(out[i], img[i]) for i in range(16)]
    assert sum(changed) >= 8  # angles under ~2° leave a 2-pixel bar unchanged
    assert ((out.sum((1, 2, 3)) - 40).abs() <= 8).all()  # nearest interpolation: about the same pixel count


def test_training_writes_checkpoints_and_resume_repeats_the_trajectory(tmp_path):
    splits = _tiny_splits()
    cfg = ex.TrainConfig(epochs=2, batch_size=32, max_iters=2, milestones=(1,), eval_batch=40)
    full = ex.train_snn_mlp("mlp1", splits, tmp_path / "a", cfg, progress=False, model_overrides=SMALL)
    assert len(full.history["val_accuracy"]) == 2 and full.history["lr"] == [1e-4, pytest.approx(1e-5)]
    half = ex.train_snn_mlp("mlp1", splits, tmp_path / "b", ex.TrainConfig(**{**cfg.__dict__, "epochs": 1}),
                            progress=False, model_overrides=SMALL)
    assert len(half.history["train_loss"]) == 1
    resumed = ex.train_snn_mlp("mlp1", splits, tmp_path / "b", cfg, resume=True, progress=False, model_overrides=SMALL)
    assert resumed.history["train_loss"] == full.history["train_loss"]
    a, b = ex.load_checkpoint(tmp_path / "a" / "last.pt"), ex.load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert history["best_epoch"] == full.best_epoch and len(history["max_pole_modulus"]) == 2
    with pytest.raises(ValueError, match="different run"):
        ex.train_snn_mlp("mlp2", splits, tmp_path / "b", cfg, resume=True, progress=False, model_overrides=SMALL)


def test_one_epoch_lowers_the_loss_and_evaluate_reports_everything(tmp_path):
    splits = _tiny_splits(n=320)
    cfg = ex.TrainConfig(epochs=3, batch_size=32, lr=3e-3, augment="none", eval_batch=40)
    result = ex.train_snn_mlp("mlp2", splits, tmp_path, cfg, progress=False, model_overrides=SMALL)
    losses = result.history["train_loss"]
    assert losses[-1] < losses[0]
    model = ex.load_snn_mlp(result.best_path)
    scores = ex.evaluate(model, splits["test"], batch_size=16)
    confusion = np.array(scores["confusion"])
    assert confusion.sum() == 40 and scores["n_images"] == 40
    assert scores["accuracy"] == pytest.approx(np.trace(confusion) / 40)
    assert set(scores["spikes_per_image"]) == {"layer1", "layer2", "layer3"}
    assert 0 <= scores["firing_probability"]["layer1"] <= 1
    again = ex.evaluate(model, splits["test"], batch_size=40)
    assert again["confusion"] == scores["confusion"]  # batch size does not change the result


def test_bernoulli_models_report_mean_and_sd_over_encoding_seeds():
    model = ex.build_model("mlp1_poisson", **SMALL).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.linear.weight.mul_(10.0)
    split = _tiny_splits()["test"]
    scores = ex.evaluate(model, split, batch_size=40)
    assert [r["seed"] for r in scores["per_seed"]] == list(ex.EVAL_SEEDS)
    assert "accuracy_sd" in scores and scores["input"] == "bernoulli"


def test_evaluate_checkpoint_missing_file_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="snn-iir train --model mlp2"):
        ex.evaluate_checkpoint("mlp2", tmp_path / "none.pt", splits=_tiny_splits())


def test_oracle_table_matches_the_spec():
    table = ex.oracle_table()
    rows = {r["filter"]: r for r in table["filters"]}
    assert rows["IIR 4/1"]["dc_gain"] == pytest.approx(2.93883, abs=1e-4)
    assert rows["IIR 8/2"]["dc_gain"] == pytest.approx(5.96892, abs=1e-4)
    assert rows["two-state 8/2"]["dc_gain"] == pytest.approx(12.63343, abs=1e-4)
    assert rows["two-state 4/1"]["peak_k"] == 2
    assert rows["IIR 4/1"]["energy"] == pytest.approx(0.8949, abs=1e-4)
    neuron = {(r["I"], r["membrane_filter"]): r for r in table["neuron"]}
    assert neuron[(2.0, False)]["train"] == "101001000100100010001001000100"
    assert neuron[(0.3, True)]["spikes"] == 2
    assert table["surrogate"][0]["g"] == pytest.approx(0.997356, abs=1e-6)


def test_cli_oracles_and_help(capsys):
    from workbench.cli import main

    assert main(["snn-iir", "oracles", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["coefficients"][0]["alpha_1"] == pytest.approx(1.146680, abs=1e-6)
    assert main(["snn-iir", "eval", "--model", "mlp1", "--checkpoint", "/nonexistent/x.pt", "--smoke"]) == 2


def test_cli_train_smoke_then_eval(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    splits = _tiny_splits()
    monkeypatch.setattr(ex, "mnist_splits", lambda **kw: splits)
    out = tmp_path / "run"
    assert main(["snn-iir", "train", "--model", "mlp2", "--smoke", "--max-iters", "2", "--batch-size", "16",
                 "--out", str(out), "--no-progress"]) == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "history.json").is_file()
    printed = capsys.readouterr().out
    assert "epoch 0:" in printed and "test images: accuracy" in printed
    assert json.loads((out / "test.json").read_text())["n_images"] == 40
    assert main(["snn-iir", "eval", "--model", "mlp2", "--checkpoint", str(out / "best.pt"), "--smoke",
                 "--out", str(tmp_path / "r.json"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n_images"] == 40 and len(result["per_class_accuracy"]) == 10
    assert set(result["spikes_per_image"]) == {"layer1", "layer2", "layer3"}
