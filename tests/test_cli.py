"""The `hnnwb` command line: help everywhere, small real runs, clear errors."""

import json
import subprocess
import sys

import pytest

from workbench.cli import build_parser, main

SUBCOMMANDS = [
    ["info"], ["data"], ["data", "make"], ["data", "info"], ["neuron"], ["neuron", "list"],
    ["neuron", "simulate"], ["record"], ["record", "info"], ["tour"],
]


def test_console_script_lists_subcommands():
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for name in ("info", "data", "neuron", "record", "tour"):
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
