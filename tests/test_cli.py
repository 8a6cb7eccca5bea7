"""The `hnnwb` command line: help everywhere, small real runs, clear errors."""

import json
import subprocess
import sys

import pytest

from workbench.cli import build_parser, main

SUBCOMMANDS = [
    ["info"], ["data"], ["data", "make"], ["data", "info"], ["data", "get"], ["neuron"], ["neuron", "list"],
    ["neuron", "simulate"], ["record"], ["record", "info"], ["tour"], ["dasbe"], ["dasbe", "eval"],
    ["dasbe", "train"], ["dasbe", "synchrony"], ["reproduce"], ["reproduce", "table1"],
]


def test_console_script_lists_subcommands():
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for name in ("info", "data", "neuron", "record", "tour", "dasbe", "reproduce"):
        assert name in done.stdout


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=["-".join(w) for w in SUBCOMMANDS])
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: hnnwb" in capsys.readouterr().out


def test_info_reports_versions(capsys):
    assert main(["info", "--threads", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch_threads"] == 1 and info["torch"]


def test_data_make_and_info_round_trip(tmp_path, capsys):
    out = tmp_path / "bars.h5"
    assert main(["data", "make", "bars", "--out", str(out), "--n-train", "20", "--n-test", "5", "--n-single", "10"]) == 0
    assert out.exists()
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_multi"]["shape"][0] == 20
    assert summary["train_multi"]["on_pixels_mean(first<=1000)"] == 204.0
    assert summary["train_multi"]["max_label"] == 12


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nope.h5")]) == 2
    assert "nope.h5" in capsys.readouterr().err


def test_neuron_simulate_writes_trace(tmp_path, capsys):
    out = tmp_path / "trace.json"
    assert main(["neuron", "simulate", "--model", "lif", "--steps", "50", "--amplitude", "3", "--out", str(out)]) == 0
    trace = json.loads(out.read_text())
    assert len(trace["spikes"]) == 50 and any(trace["spikes"])


def test_neuron_simulate_rejects_unknown_model(capsys):
    assert main(["neuron", "simulate", "--model", "nope"]) == 2
    assert "lif" in capsys.readouterr().err


# --- DASBE subcommands ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bars_and_dae(tmp_path_factory):
    """A tiny Bars file (8 train_multi images) and a toy DAE checkpoint (30 epochs on single bars)."""
    import torch

    from workbench.checkpoints import model_config, save_checkpoint
    from workbench.data.bars import bars_splits, single_bars
    from workbench.data.store import write_splits
    from workbench.models.dae import MLPDAE, train_dae

    root = tmp_path_factory.mktemp("dasbe_cli")
    data = write_splits(root / "bars.h5", bars_splits(n_train=8, n_test=2, n_single=20))
    dae = MLPDAE(seed=0)
    singles = torch.as_tensor(single_bars(200, seed=0)[0].reshape(200, -1), dtype=torch.float32)
    train_dae(dae, singles, epochs=30, batch_size=32, seed=0, progress=False)
    return data, save_checkpoint(root / "best.pt", dae, model_config(dae, "bars"))


def test_dasbe_eval_end_to_end(bars_and_dae, tmp_path, capsys):
    data, ckpt = bars_and_dae
    out = tmp_path / "result.json"
    argv = ["dasbe", "eval", "--data", str(data), "--split", "train_multi", "--preset", "bars", "--images", "3",
            "--seeds", "111,222", "--dae", str(ckpt), "--method", "dasbe", "--out", str(out), "--n-iter", "12",
            "--threads", "1", "--batch-size", "2"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 3 and result["seeds"] == [111, 222] and len(result["per_image_ami"]) == 2
    assert set(result["per_seed_mean"]) == {"111", "222"} and result["seconds"] > 0
    assert result["ami_mean"] > 0.8 and result["dae"] == str(ckpt)
    assert "AMI" in capsys.readouterr().out


def test_dasbe_eval_errors_name_the_fix(bars_and_dae, tmp_path, capsys):
    data, _ = bars_and_dae
    base = ["dasbe", "eval", "--preset", "bars", "--images", "2", "--out", str(tmp_path / "r.json")]
    assert main([*base, "--data", str(tmp_path / "bars.h5"), "--dae", "x.pt"]) == 2
    assert "hnnwb data make bars" in capsys.readouterr().err
    assert main([*base, "--data", str(data), "--dae", str(tmp_path / "missing.pt")]) == 2
    assert "hnnwb dasbe train --preset bars" in capsys.readouterr().err
    assert main([*base, "--data", str(data), "--dae", "x.pt", "--seeds", "1,a"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_dasbe_eval_pcnn_needs_no_dae(bars_and_dae, tmp_path):
    data, _ = bars_and_dae
    out = tmp_path / "pcnn.json"
    assert main(["dasbe", "eval", "--data", str(data), "--preset", "bars", "--images", "2", "--seeds", "111",
                 "--method", "pcnn", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "pcnn" and result["dae"] is None and result["ami_mean"] < 0.3


def test_reproduce_table1_writes_json_and_markdown(bars_and_dae, tmp_path, capsys):
    data, ckpt = bars_and_dae
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "bars.h5").write_bytes(data.read_bytes())
    out = tmp_path / "t1.json"
    assert main(["reproduce", "table1", "--images", "2", "--seeds", "111", "--datasets", "bars,shapes",
                 "--methods", "pcnn", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["cells"]["shapes"]["pcnn"]["missing"].startswith("missing: hnnwb data make shapes")
    assert result["cells"]["bars"]["pcnn"]["ami_mean_x100"] < 30
    markdown = out.with_suffix(".md").read_text()
    assert "| Bars |" in markdown and "9.3 +- 0.04" in markdown
    assert "Table I" in capsys.readouterr().out


def test_data_make_any_registered_dataset(tmp_path, capsys):
    out = tmp_path / "corners.h5"
    assert main(["data", "make", "corners", "--out", str(out), "--size", "train_multi=3", "--size", "test=2",
                 "--size", "train_single=7", "--no-progress"]) == 0
    from workbench.data.store import list_splits

    assert list_splits(out)["train_multi"][0] == 3
    assert main(["data", "make", "nope"]) == 2
    assert "corners" in capsys.readouterr().err


def test_data_get_mnist_reports_how_to_get_it(tmp_path, capsys):
    assert main(["data", "get", "mnist", "--source", "idx", "--cache-dir", str(tmp_path), "--no-download"]) == 2
    assert "mnist" in capsys.readouterr().err.lower()


def test_dasbe_train_writes_checkpoints(bars_and_dae, tmp_path, capsys):
    data, _ = bars_and_dae
    out = tmp_path / "dae"
    assert main(["dasbe", "train", "--preset", "bars", "--data", str(data), "--out", str(out), "--epochs", "2",
                 "--no-progress", "--threads", "1"]) == 0
    assert (out / "best.pt").exists() and (out / "last.pt").exists() and (out / "history.json").exists()
    assert "--dae" in capsys.readouterr().out
    assert main(["dasbe", "train", "--preset", "bars", "--data", str(tmp_path / "none.h5")]) == 2
    assert "hnnwb data make bars" in capsys.readouterr().err


def test_dasbe_moving_writes_fig5_json(tmp_path, capsys):
    from workbench.data.datasets import make_dataset

    sizes = {"train_multi": 2, "test": 1, "train_single": 1, "train_single_0": 1, "train_single_1": 1,
             "train_single_2": 1}
    data = make_dataset("moving_shapes_3", tmp_path / "ms3.h5", progress=False, sizes=sizes)
    out = tmp_path / "fig5.json"
    assert main(["dasbe", "moving", "--data", str(data), "--out", str(out), "--trace", "1", "--sequences", "2",
                 "--n-iter", "17", "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    assert len(result["ami"]) == 17 and result["trace"] == 1
