"""Checkpoints: format, atomic save, weights-only load, model rebuild, and the errors at the boundary."""

import json
import os
from pathlib import Path

import pytest
import torch

from workbench.checkpoints import (FORMAT, VERSION, CheckpointError, CheckpointNotFoundError, load_checkpoint,
                                   load_dae, model_config, save_checkpoint)
from workbench.models.dae import MLPDAE
from workbench.models.rbae import RBAE
from workbench.models.spiking_dae import SpikingDAE

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "dasbe"


def small_dae(seed=0):
    return MLPDAE((30, 12, 6, 12, 30), seed=seed)


def test_round_trip_keeps_weights_config_and_extra(tmp_path):
    dae = small_dae()
    path = save_checkpoint(tmp_path / "a.pt", dae, model_config(dae, preset="shapes", seed=3),
                           extra={"epoch": 7, "val_loss": 0.25, "history": {"val_loss": [0.3, float("nan")]}})
    raw = torch.load(path, weights_only=True)  # plain tensors, numbers and strings only
    assert raw["format"] == FORMAT and raw["version"] == VERSION and "train_state" not in raw
    assert isinstance(raw["config"], str) and isinstance(raw["extra"], str)
    ckpt = load_checkpoint(path)
    assert ckpt.config == {"preset": "shapes", "model": "MLPDAE", "kwargs": {"sizes": [30, 12, 6, 12, 30],
                                                                             "hidden_act": "sigmoid"}, "seed": 3}
    assert ckpt.extra["epoch"] == 7 and ckpt.extra["history"]["val_loss"] == [0.3, None]  # NaN -> null
    again = load_dae(path)
    x = torch.rand(4, 30)
    assert isinstance(again, MLPDAE) and not again.training
    assert torch.equal(again(x)[0], dae(x)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left behind


def test_train_state_with_optimizer_loads_weights_only(tmp_path):
    dae = small_dae()
    opt = torch.optim.Adam(dae.parameters(), lr=0.01)
    dae(torch.rand(2, 30))[0].sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    save_checkpoint(tmp_path / "last.pt", dae, model_config(dae), train_state={"optimizer": opt.state_dict(),
                                                                              "rng": gen.get_state()})
    ckpt = load_checkpoint(tmp_path / "last.pt")
    fresh = torch.optim.Adam(small_dae(seed=1).parameters(), lr=0.5)
    fresh.load_state_dict(ckpt.train_state["optimizer"])
    assert fresh.param_groups[0]["lr"] == 0.01
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.Generator().set_state(ckpt.train_state["rng"]).get_state(), gen.get_state())


def test_spiking_and_recurrent_models_rebuild_from_their_config(tmp_path):
    spiking = SpikingDAE((30, 12, 8, 12, 30), hidden_act="sigmoid", refractory=5, seed=0)
    rbae = RBAE((30, 16, 8), seed=0)
    for model in (spiking, rbae):
        path = save_checkpoint(tmp_path / f"{type(model).__name__}.pt", model, model_config(model))
        again = load_dae(path)
        assert type(again) is type(model) and again.config_kwargs() == model.config_kwargs()
        assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    assert load_dae(tmp_path / "SpikingDAE.pt").refractory == 5


def test_plain_state_dicts_become_an_mlp_dae(tmp_path):
    torch.manual_seed(0)
    plain = {"encoder.weight": torch.randn(8, 20), "encoder.bias": torch.randn(8),
             "decoder.weight": torch.randn(20, 8), "decoder.bias": torch.randn(20)}
    torch.save(plain, tmp_path / "authors.pt")
    dae = load_dae(tmp_path / "authors.pt")
    x = torch.rand(3, 20)
    expected = torch.sigmoid(torch.sigmoid(x @ plain["encoder.weight"].T + plain["encoder.bias"])
                             @ plain["decoder.weight"].T + plain["decoder.bias"])
    assert dae.sizes == (20, 8, 20) and torch.allclose(dae(x)[0], expected, atol=1e-6)
    with pytest.raises(CheckpointError, match="not an hnnwb checkpoint"):
        load_checkpoint(tmp_path / "authors.pt")


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference/dasbe not present")
@pytest.mark.parametrize("name,sizes", [("bars", (400, 256, 400)), ("corners", (784, 256, 784)),
                                        ("mnist_shape", (784, 250, 784))])
def test_authors_published_weights_load(name, sizes):
    dae = load_dae(REFERENCE / f"{name}_dae.pt")
    assert isinstance(dae, MLPDAE) and dae.sizes == sizes


def test_missing_file_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="python -m workbench.models.presets") as err:
        load_dae(tmp_path / "nothing.pt")
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(CheckpointNotFoundError, match="presets shapes --data data/shapes.h5"):
        load_checkpoint(tmp_path / "checkpoints" / "dasbe_shapes.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_dae(tmp_path)


def test_files_that_are_not_checkpoints(tmp_path):
    torch.save(small_dae().state_dict(), tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    for text in ("hello", "garbage"):  # torch calls "garbage" a weights-only refusal; it is not pickled objects
        (tmp_path / f"{text}.pt").write_text(text)
    for name in ("hello", "garbage", "truncated", "empty"):
        with pytest.raises(CheckpointError, match="not a readable torch checkpoint: damaged, truncated"):
            load_dae(tmp_path / f"{name}.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="neither an hnnwb checkpoint nor a plain state dict"):
        load_dae(tmp_path / "list.pt")
    torch.save({"encoder.weight": torch.zeros(3, 4)}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="plain state dict but not a DAE"):
        load_dae(tmp_path / "partial.pt")


def test_pickled_modules_are_refused_not_unpickled(tmp_path):
    torch.save(small_dae(), tmp_path / "module.pt")  # a whole pickled module, like the authors' originals
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_dae(tmp_path / "module.pt")


def _rewrite(path, **changes):
    raw = torch.load(path, weights_only=True)
    raw.update(changes)
    torch.save(raw, path)


def test_unknown_preset_model_and_newer_version(tmp_path):
    dae = small_dae()
    path = save_checkpoint(tmp_path / "a.pt", dae, model_config(dae, preset="bars"))
    _rewrite(path, config=json.dumps({**model_config(dae), "preset": "cifar"}))
    with pytest.raises(CheckpointError, match="preset 'cifar'.*known presets"):
        load_dae(path)
    _rewrite(path, config=json.dumps({**model_config(dae), "model": "ConvDAE"}))
    with pytest.raises(CheckpointError, match="unknown model 'ConvDAE'"):
        load_dae(path)
    _rewrite(path, config=json.dumps({**model_config(dae), "kwargs": {"sizes": [30, 12]}}))
    with pytest.raises(CheckpointError, match="cannot build MLPDAE"):
        load_dae(path)
    _rewrite(path, config=json.dumps(model_config(dae)), version=VERSION + 1)
    with pytest.raises(CheckpointError, match="version"):
        load_dae(path)


def test_shape_mismatch_and_non_finite_weights(tmp_path):
    dae = small_dae()
    state = dict(dae.state_dict())
    state["decoder.1.bias"] = torch.zeros(29)
    path = save_checkpoint(tmp_path / "a.pt", state, model_config(dae))
    with pytest.raises(CheckpointError, match=r"'decoder.1.bias' has shape \(29,\).*expects \(30,\)"):
        load_dae(path)
    state = dict(dae.state_dict())
    del state["decoder.1.bias"]
    save_checkpoint(path, state, model_config(dae))
    with pytest.raises(CheckpointError, match="missing \\['decoder.1.bias'\\]"):
        load_dae(path)
    state = {k: v.clone() for k, v in dae.state_dict().items()}
    state["encoder.0.weight"][0, 0] = float("inf")
    save_checkpoint(path, state, model_config(dae))
    with pytest.raises(CheckpointError, match="'encoder.0.weight' has 1 NaN/inf"):
        load_dae(path)
    assert load_checkpoint(path, check_finite=False).state_dict["encoder.0.weight"][0, 0] == float("inf")


def test_failed_save_leaves_the_old_file_intact(tmp_path):
    dae = small_dae()
    path = save_checkpoint(tmp_path / "a.pt", dae, model_config(dae))
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(path, dae, {"preset": None, "tensor": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="not a tensor"):
        save_checkpoint(path, {"w": [1.0]}, {})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.pt"]


def test_load_for_resume_checks_the_run_config_and_training_state(tmp_path):
    from workbench.checkpoints import load_for_resume, save_checkpoint

    config = {"model": "MLPDAE", "training": {"lr": 0.01, "epochs": 10}}
    path = save_checkpoint(tmp_path / "last.pt", MLPDAE((4, 3, 4), seed=0), config, train_state={"optimizer": {}})
    assert load_for_resume(path, config).train_state == {"optimizer": {}}
    longer = {"model": "MLPDAE", "training": {"lr": 0.01, "epochs": 50}}
    assert load_for_resume(path, longer, may_change=["training.epochs"]).path == path
    with pytest.raises(CheckpointError, match=r"training\.epochs"):
        load_for_resume(path, longer)
    with pytest.raises(CheckpointError, match=r"\['training\.lr'\]"):
        load_for_resume(path, {"model": "MLPDAE", "training": {"lr": 0.1, "epochs": 10}}, may_change=["training.epochs"])
    stateless = save_checkpoint(tmp_path / "best.pt", MLPDAE((4, 3, 4), seed=0), config)
    with pytest.raises(CheckpointError, match="no training state"):
        load_for_resume(stateless, config)
