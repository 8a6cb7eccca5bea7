"""GUST training (spec gust.md §4): files, validation schedule, lr steps, early stopping, exact resume, CLI."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from workbench.checkpoints import load_checkpoint
from workbench.experiments import gust_train
from workbench.experiments.gust_train import GustTrainConfig, smoke_config, train_gust, training_curve
from workbench.models.gust import GustParams, load_gust

SHAPE = (6, 6)
PARAMS = GustParams(n_pixels=36, hidden=8, enc_hidden=16, dec_hidden=16)


def tiny_data(n_train: int = 24, n_val: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n_train + n_val, 36)
    for i in range(len(x)):  # a random 3x3 block or two per image
        for _ in range(2):
            r, c = torch.randint(0, 4, (2,), generator=g).tolist()
            x[i].view(6, 6)[r:r + 3, c:c + 3] = 1
    return x[:n_train], x[n_train:], SHAPE


def tiny_config(**changes) -> GustTrainConfig:
    base = dict(batch_size=8, epochs=3, cycles=2, val_batch_size=5, params=PARAMS, patience=10)
    return GustTrainConfig(**{**base, **changes})


def _weights(path):
    return load_checkpoint(path).state_dict


def test_run_writes_checkpoints_history_and_validates_each_epoch(tmp_path):
    config = tiny_config(lr_steps=((0, 0.5),))
    result = train_gust(tiny_data(), tmp_path, config, progress=False)
    h = json.loads((tmp_path / "history.json").read_text())
    assert len(h["train_loss"]) == 9 and h["iterations_per_epoch"] == 3
    assert [v["iteration"] for v in h["val"]] == [0, 3, 6, 9]
    assert [v["epoch"] for v in h["val"]] == [-1, 0, 1, 2]
    assert [v["lr"] for v in h["val"]] == [0.01, 0.01, 0.005, 0.005]  # halved after epoch index 0
    assert all(np.isfinite(v["val_loss"]) and np.isfinite(v["val_loss_clean"]) for v in h["val"])
    best = min(h["val"], key=lambda v: v["val_loss"])
    assert h["best"]["iteration"] == best["iteration"] and h["finished"]
    net = load_gust(tmp_path / "best.pt")
    for a, b in zip(net.state_dict().values(), result.net.state_dict().values()):
        assert torch.equal(a, b)  # the returned net holds the best weights
    last = load_checkpoint(tmp_path / "last.pt")
    assert last.train_state["iteration"] == 9
    assert last.extra == {"iteration": 9, "epoch": 2, "val_loss": h["val"][-1]["val_loss"],
                          "val_loss_clean": h["val"][-1]["val_loss_clean"]}  # labelled like best.pt and the log
    curve = training_curve(tmp_path / "history.json", smooth=2)
    assert len(curve["train_loss"]) == 8 and list(curve["val_iteration"]) == [0, 3, 6, 9]


def test_training_lowers_the_loss_and_is_seeded(tmp_path):
    config = tiny_config(epochs=6, lr=0.02)
    a = train_gust(tiny_data(), tmp_path / "a", config, progress=False).history
    b = train_gust(tiny_data(), tmp_path / "b", config, progress=False).history
    c = train_gust(tiny_data(), tmp_path / "c", tiny_config(epochs=6, lr=0.02, seed=1), progress=False).history
    assert a["train_loss"] == b["train_loss"] and a["val"][-1]["val_loss"] == b["val"][-1]["val_loss"]
    assert a["train_loss"] != c["train_loss"]
    assert a["best"]["val_loss"] < a["val"][0]["val_loss"]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    config = tiny_config()
    train_gust(tiny_data(), tmp_path / "full", config, progress=False)
    train_gust(tiny_data(), tmp_path / "cut", config, progress=False, stop_after=4)  # mid-epoch
    assert load_checkpoint(tmp_path / "cut" / "last.pt").train_state["iteration"] == 4
    train_gust(tiny_data(), tmp_path / "cut", config, progress=False, resume=True)
    for name in ("last.pt", "best.pt"):
        full, cut = _weights(tmp_path / "full" / name), _weights(tmp_path / "cut" / name)
        assert all(torch.equal(full[k], cut[k]) for k in full)
    hf = json.loads((tmp_path / "full" / "history.json").read_text())
    hc = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert hf["train_loss"] == hc["train_loss"]
    assert [v["val_loss"] for v in hf["val"]] == [v["val_loss"] for v in hc["val"]]
    assert load_checkpoint(tmp_path / "cut" / "last.pt").train_state["optimizer"]["state"][0]["step"] == 9


def test_ctrl_c_during_an_epoch_end_validation_resumes_exactly(tmp_path, monkeypatch):
    config = tiny_config(lr_steps=((0, 0.5),))
    train_gust(tiny_data(), tmp_path / "full", config, progress=False)
    real, calls = gust_train.validation_loss, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the clean pass of epoch 0's validation (after the corrupted pass)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gust_train, "validation_loss", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_gust(tiny_data(), tmp_path / "cut", config, progress=False)
    monkeypatch.setattr(gust_train, "validation_loss", real)
    saved = load_checkpoint(tmp_path / "cut" / "last.pt").train_state
    assert saved["iteration"] == 3 and saved["optimizer"]["param_groups"][0]["lr"] == 0.01  # rolled back
    train_gust(tiny_data(), tmp_path / "cut", config, progress=False, resume=True)
    hf = json.loads((tmp_path / "full" / "history.json").read_text())
    hc = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [(v["iteration"], v["val_loss"], v["lr"]) for v in hf["val"]] == \
        [(v["iteration"], v["val_loss"], v["lr"]) for v in hc["val"]]
    full, cut = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_iteration_cap_validates_there_and_resume_extends_it(tmp_path):
    train_gust(tiny_data(), tmp_path, tiny_config(iterations=4), progress=False)
    h = json.loads((tmp_path / "history.json").read_text())
    assert len(h["train_loss"]) == 4 and [v["iteration"] for v in h["val"]] == [0, 3, 4]
    train_gust(tiny_data(), tmp_path, tiny_config(iterations=7), progress=False, resume=True)
    h = json.loads((tmp_path / "history.json").read_text())
    assert len(h["train_loss"]) == 7 and [v["iteration"] for v in h["val"]] == [0, 3, 4, 6, 7]


def test_resume_refuses_a_different_recipe(tmp_path):
    train_gust(tiny_data(), tmp_path, tiny_config(iterations=2), progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_gust(tiny_data(), tmp_path, tiny_config(lr=0.5), progress=False, resume=True)


def test_resume_may_add_an_lr_step_at_the_epoch_in_progress(tmp_path):
    later = tiny_config(lr_steps=((1, 0.5),))
    train_gust(tiny_data(), tmp_path / "full", later, progress=False)
    train_gust(tiny_data(), tmp_path / "cut", tiny_config(lr_steps=()), progress=False, stop_after=4)  # in epoch 1
    lines = []
    train_gust(tiny_data(), tmp_path / "cut", later, progress=False, resume=True, log=lines.append)
    assert any("lr steps [] -> [[1, 0.5]] from epoch 1" in line for line in lines)
    full, cut = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(full[k], cut[k]) for k in full)  # as if the step had been planned from the start
    h = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [v["lr"] for v in h["val"]] == [0.01, 0.01, 0.01, 0.005] and h["config"]["lr_steps"] == [[1, 0.5]]


def test_resume_refuses_to_change_an_lr_step_already_applied(tmp_path):
    train_gust(tiny_data(), tmp_path, tiny_config(lr_steps=((0, 0.5),)), progress=False, stop_after=4)
    for steps in ((), ((0, 0.25),), ((1, 0.5),)):
        with pytest.raises(ValueError, match="already applied"):
            train_gust(tiny_data(), tmp_path, tiny_config(lr_steps=steps), progress=False, resume=True)
    with pytest.raises(ValueError, match="lr"):  # the rate itself never changes on resume
        train_gust(tiny_data(), tmp_path, tiny_config(lr=0.5, lr_steps=((0, 0.5), (2, 0.5))), progress=False,
                   resume=True)


def test_lr_steps_option_parses_pairs_and_rejects_bad_ones():
    parse = gust_train._parse_lr_steps
    assert parse(None) is None and parse("") == ()
    assert parse("100:0.5, 60:0.5") == ((60, 0.5), (100, 0.5))
    for bad in ("60", "60:x", "-1:0.5", "60:0", "60:nan"):
        with pytest.raises(ValueError, match="EPOCH:FACTOR"):
            parse(bad)


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path, monkeypatch):
    scores = iter(np.linspace(1.0, 2.0, 50))  # validation only gets worse
    monkeypatch.setattr(gust_train, "validation_loss", lambda *a, **k: float(next(scores)))
    h = train_gust(tiny_data(), tmp_path, tiny_config(epochs=10, patience=2, clean_val=False),
                   progress=False).history
    assert h["stopped_early"] and h["best"]["epoch"] == -1
    assert len(h["train_loss"]) == 3 * 3  # epochs 0, 1, 2 ran; 2 - (-1) > 2 stops


def test_resume_with_more_patience_continues_an_early_stopped_run(tmp_path, monkeypatch):
    scores = iter(np.linspace(1.0, 2.0, 50))  # validation only gets worse
    monkeypatch.setattr(gust_train, "validation_loss", lambda *a, **k: float(next(scores)))
    config = tiny_config(epochs=10, patience=2, clean_val=False)
    assert train_gust(tiny_data(), tmp_path, config, progress=False).history["stopped_early"]
    same = train_gust(tiny_data(), tmp_path, config, progress=False, resume=True).history
    assert same["stopped_early"] and len(same["train_loss"]) == 3 * 3  # same patience: nothing more to do
    more = train_gust(tiny_data(), tmp_path, dataclasses.replace(config, patience=4), progress=False,
                      resume=True).history
    assert more["stopped_early"] and len(more["train_loss"]) == 5 * 3  # epochs 3, 4 ran; 4 - (-1) > 4 stops


def test_config_checks_and_smoke_recipe():
    assert smoke_config().batch_size == 64 and smoke_config().iterations == 300 and smoke_config().lr == 0.01
    assert GustTrainConfig().iterations_per_epoch == 18 and GustTrainConfig().total_iterations == 7200
    with pytest.raises(ValueError, match="drop_p"):
        GustTrainConfig(drop_p=1.0)
    back = GustTrainConfig.from_dict(tiny_config().to_dict())
    assert back == tiny_config()


def test_cli_gust_train_and_resume(tmp_path, capsys):
    from workbench.cli import main
    from workbench.data.store import write_splits

    train, val, _ = tiny_data(16, 8)
    x = torch.cat([train, val]).reshape(-1, 6, 6).numpy()
    data = write_splits(tmp_path / "tiny.h5", {"train_multi": (x, x.astype(np.int64))})
    args = ["gust", "train", "--data", str(data), "--out", str(tmp_path / "run"), "--n-train", "16", "--n-val", "8",
            "--batch-size", "8", "--iterations", "2", "--no-progress", "--threads", "1"]
    assert main(args) == 0
    assert "best val loss/image" in capsys.readouterr().out
    assert main(args[:-4] + ["3", "--resume", "--no-progress", "--threads", "1"]) == 0
    h = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(h["train_loss"]) == 3 and h["config"]["lr_steps"] == [[60, 0.5], [100, 0.5], [200, 0.5]]
    assert main(args[:-4] + ["4", "--resume", "--lr-steps", "60:0.5,100:0.5,200:0.5,1:0.5", "--no-progress"]) == 0
    h = json.loads((tmp_path / "run" / "history.json").read_text())
    assert h["config"]["lr_steps"] == [[1, 0.5], [60, 0.5], [100, 0.5], [200, 0.5]] and len(h["train_loss"]) == 4
    with pytest.raises(FileNotFoundError, match="hnnwb data make"):
        gust_train.load_training_data(tmp_path / "missing.h5")


def _labelled_file(tmp_path):
    from workbench.data.store import write_splits

    train, val, _ = tiny_data(16, 8)
    x = torch.cat([train, val]).reshape(-1, 6, 6).numpy()
    labels = x.astype(np.int64)
    labels[:, :, 3:] *= 2  # two "objects": left and right half of the on-pixels
    return write_splits(tmp_path / "tiny.h5", {"train_multi": (x, labels), "test": (x[:6], labels[:6])})


def test_periodic_grouping_scores_are_logged_and_do_not_change_training(tmp_path):
    data = _labelled_file(tmp_path)
    config = tiny_config(epochs=4, n_train=16, n_val=8, score_every=2, score_images=3, score_cycles=3)
    scored = train_gust(data, tmp_path / "scored", config, progress=False).history
    plain = train_gust(data, tmp_path / "plain", tiny_config(epochs=4, n_train=16, n_val=8), progress=False).history
    assert scored["train_loss"] == plain["train_loss"]  # scoring draws from its own generators
    assert [s["epoch"] for s in scored["scores"]] == [-1, 1, 3] and plain["scores"] == []
    assert all(s["images"] == 3 and (s["ami"] is None or -1 <= s["ami"] <= 1) for s in scored["scores"])
    assert all(0 <= s["silent_share"] <= 1 for s in scored["scores"])
    curve = training_curve(scored)
    assert list(curve["score_epoch"]) == [-1, 1, 3] and curve["score_ami"].shape == (3,)
    assert training_curve(plain)["score_epoch"].size == 0


def test_scoring_needs_labelled_data_and_valid_settings(tmp_path):
    with pytest.raises(ValueError, match="score_data"):
        train_gust(tiny_data(), tmp_path, tiny_config(score_every=1), progress=False)
    with pytest.raises(ValueError, match="score_images"):
        tiny_config(score_every=1, score_images=0)
    with pytest.raises(ValueError, match="score_every"):
        tiny_config(score_every=-1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_background_training_saves_and_stops_on_sigterm_or_kill_int(tmp_path, sig):
    """`kill` (SIGTERM) and `kill -INT` of a job started with `nohup ... &` (SIGINT inherited as ignored)
    stop the run like Ctrl-C: last.pt is saved and --resume continues from it."""
    from workbench.data.store import write_splits

    train, val, _ = tiny_data(16, 8)
    x = torch.cat([train, val]).reshape(-1, 6, 6).numpy()
    data = write_splits(tmp_path / "tiny.h5", {"train_multi": (x, x.astype(np.int64))})
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "workbench.cli", "gust", "train", "--data", str(data), "--out", str(run),
           "--n-train", "16", "--n-val", "8", "--batch-size", "8", "--epochs", "1000000", "--patience", "1000000",
           "--no-progress", "--threads", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let it train past the first save
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the signal did not stop it: do not leave a training behind
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out
    assert "interrupted: saved" in out and "--resume" in out
    stopped = load_checkpoint(run / "last.pt").train_state["iteration"]
    assert stopped > 0
    h = json.loads((run / "history.json").read_text())
    assert len(h["train_loss"]) == stopped and not h["finished"]
