"""Shipping GUST nets: packed (float16) checkpoints, the training budget of each table row, `hnnwb gust pack`
and `hnnwb gust table --nets`."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from workbench.cli import main
from workbench.experiments.gust import budget_text, generalisation_table, training_budget
from workbench.experiments.gust_train import smoke_config, train_gust
from workbench.models.gust import GustNet, compact_history, load_gust, pack_gust

@pytest.fixture(scope="module")
def data(gust_tiny_data):
    return gust_tiny_data


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A real (tiny) training run folder: best.pt, last.pt, history.json."""
    out = tmp_path_factory.mktemp("gust_run") / "run_3"
    train_gust(data / "shapes_multiobj_3_3.h5", out,
               smoke_config(batch_size=4, iterations=3, n_train=8, n_val=4, score_every=0), progress=False)
    return out


def test_pack_halves_the_file_and_loads_back_as_float32(run, tmp_path):
    best = pack_gust(run, tmp_path / "packed")
    assert best == tmp_path / "packed" / "best.pt"
    assert best.stat().st_size < 0.55 * (run / "best.pt").stat().st_size
    packed_h, run_h = (json.loads(p.read_text()) for p in (tmp_path / "packed" / "history.json", run / "history.json"))
    assert packed_h.pop("train_loss") == pytest.approx(run_h.pop("train_loss"), rel=1e-5) and packed_h == run_h
    stored = load_checkpoint(best)
    assert all(v.dtype == torch.float16 for v in stored.state_dict.values())
    assert stored.extra["stored_dtype"] == "float16" and stored.extra["iteration"] == load_checkpoint(run / "best.pt").extra["iteration"]
    full, packed = load_gust(run), load_gust(best)
    for (name, a), b in zip(full.state_dict().items(), packed.state_dict().values()):
        assert b.dtype == torch.float32, name
        assert torch.allclose(a, b, rtol=2 ** -10, atol=1e-7), name  # float16 rounding only
    assert not all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), packed.state_dict().values()))


def test_pack_keeps_float32_exactly_and_refuses_bad_input(run, tmp_path):
    pack_gust(run / "best.pt", tmp_path / "same", dtype="float32")
    for a, b in zip(load_gust(run).state_dict().values(), load_gust(tmp_path / "same").state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not one of"):
        pack_gust(run, tmp_path / "x", dtype="int8")
    other = save_checkpoint(tmp_path / "dae.pt", {"w": torch.zeros(2)}, {"model": "MLPDAE"})
    with pytest.raises(CheckpointError, match="not a GUST network"):
        pack_gust(other, tmp_path / "x")
    huge = load_checkpoint(run / "best.pt")
    state = {k: v.clone() for k, v in huge.state_dict.items()}
    next(iter(state.values())).view(-1)[0] = 1e6  # beyond float16's 65504
    save_checkpoint(tmp_path / "huge" / "best.pt", state, huge.config, extra=huge.extra)
    with pytest.raises(CheckpointError, match="overflow float16"):
        pack_gust(tmp_path / "huge", tmp_path / "x")
    assert not (tmp_path / "x" / "best.pt").exists()
    with pytest.raises(FileNotFoundError):
        pack_gust(tmp_path / "absent", tmp_path / "x")


def test_compact_history_rounds_only_the_training_loss():
    text = json.dumps({"train_loss": [0.0021234567891, 0.5, None], "val": [{"val_loss": 0.0021234567891}],
                       "iterations_per_epoch": 282}, indent=2)
    small = compact_history(text)
    h = json.loads(small)
    assert h["train_loss"] == [0.00212346, 0.5, None] and h["val"][0]["val_loss"] == 0.0021234567891
    assert "\n" not in small.rstrip("\n") and len(small) < len(text)


def test_training_budget_reads_the_checkpoint_and_the_run_history(run, tmp_path):
    h = json.loads((run / "history.json").read_text())
    b = training_budget(run)
    assert b["batch_size"] == 4 and b["lr"] == 0.01 and b["n_train"] == 8
    assert b["run_iterations"] == 3 == len(h["train_loss"]) and b["run_epochs"] == pytest.approx(1.5)
    assert b["checkpoint_iteration"] == h["best"]["iteration"] and b["stored_dtype"] == "float32"
    text = budget_text(b)
    assert text.startswith("batch 4, lr 0.01, 3 iterations (1.5 epochs of 8 images)") and "h wall" in text
    pack_gust(run, tmp_path / "p")
    (tmp_path / "p" / "history.json").unlink()  # a lone checkpoint still states its own recipe and iteration
    lone = training_budget(tmp_path / "p")
    assert "run_iterations" not in lone and lone["stored_dtype"] == "float16"
    assert budget_text(lone).endswith("weights stored as float16")
    assert training_budget(GustNet(seed=0)) is None and budget_text(None) == "training budget unknown"


def test_table_records_each_rows_budget_and_cli_takes_a_net_pattern(data, run, tmp_path, capsys):
    files = {2: data / "shapes_multiobj_3_2.h5", 3: data / "shapes_multiobj_3_3.h5"}
    t = generalisation_table({3: run}, data, images=2, cycles=3, progress=False, test_files=files)
    assert list(t["budget"]) == [3] and t["budget"][3]["run_iterations"] == 3
    pack_gust(run, tmp_path / "nets" / "net_3")
    out = tmp_path / "t.json"
    rc = main(["gust", "table", "--nets", str(tmp_path / "nets" / "net_{n}"), "--data-dir", str(data),
               "--images", "2", "--cycles", "3", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0 and "train 3 net" in printed and "weights stored as float16" in printed
    saved = json.loads(out.read_text())
    assert saved["budget"]["3"]["stored_dtype"] == "float16" and saved["ami"][1][0] is not None
    assert "train2" in saved["missing"]
    assert main(["gust", "table", "--nets", str(tmp_path / "nets"), "--out", str(out)]) == 2
    assert "hnnwb: error: --nets" in (err := capsys.readouterr().err) and "must contain {n}" in err


def test_cli_pack(run, tmp_path, capsys):
    rc = main(["gust", "pack", str(run), "--out", str(tmp_path / "shipped")])
    assert rc == 0 and "weights as float16" in capsys.readouterr().out
    assert load_gust(tmp_path / "shipped").params == load_gust(run).params
