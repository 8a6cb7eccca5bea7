"""GUST evaluation protocols (spec §5.4, §10.6, §10.9): evaluate, reference protocol, table, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t

from workbench.cli import main
from workbench.experiments.gust import (
    AUTHORS_CURVE,
    compare_nets,
    comparison_text,
    curve_stats,
    evaluate,
    figure_record,
    format_score,
    generalisation_table,
    mixed_cluster_ami,
    reference_protocol,
    slot_offsets,
    scores_by_overlap,
)
from workbench.data.store import read_overlap, read_split
from workbench.models.gust import GustNet

@pytest.fixture(scope="module")
def data(gust_tiny_data):
    return gust_tiny_data


@pytest.fixture(scope="module")
def net():
    return GustNet(seed=0)


def test_evaluate_returns_curves_and_last_cycle_means(data, net):
    r = evaluate(net, data / "shapes_multiobj_3_3.h5", images=5, seeds=(0, 1), cycles=4, batch_size=2,
                 progress=False)
    assert r["cycles"] == [1, 2, 3] and r["steps"] == [20, 30, 40]
    ami = np.array(r["ami"]["per_image"], dtype=float)
    assert ami.shape == (10, 3)  # 5 images x 2 seeds (seed-major), cycles 1..3
    assert r["ami_mean"] == pytest.approx(np.nanmean(ami[:, -1]))
    assert abs(r["ami_mean"]) < 0.2  # an untrained net is at chance
    for key in ("ami", "synscore"):
        c = r[key]
        assert all(lo <= m <= hi for lo, m, hi in zip(c["ci_low"], c["mean"], c["ci_high"]))
    assert r["seconds"]["scores_ms_per_image_cycle"] > 0 and r["n_nan"] >= 0
    assert r["silent_share_mean"] == pytest.approx(r["silent_share"]["mean"][-1])
    assert all(0.0 <= v <= 1.0 for v in r["silent_share"]["mean"]) and r["silent_share"]["n"] == [10, 10, 10]
    assert r["bound_ami_mean"] is None or -1.0 <= r["bound_ami_mean"] <= 1.0
    assert 0.0 <= r["unfired_share_mean"] <= r["silent_share_mean"]
    json.dumps(r)  # JSON-ready


def test_evaluate_does_not_depend_on_batch_size(data, net):
    kw = dict(images=4, seeds=(3, 4), cycles=3, progress=False)
    a = evaluate(net, data / "shapes_multiobj_3_3.h5", batch_size=4, **kw)
    b = evaluate(net, data / "shapes_multiobj_3_3.h5", batch_size=3, **kw)
    assert a["ami"]["per_image"] == b["ami"]["per_image"]
    assert a["synscore"]["per_image"] == b["synscore"]["per_image"]
    c = evaluate(net, data / "shapes_multiobj_3_3.h5", batch_size=4, **{**kw, "seeds": (5, 6)})
    assert c["ami"]["per_image"] != a["ami"]["per_image"]


def test_evaluate_rejects_bad_inputs(data, net):
    with pytest.raises(ValueError, match="no split 'nope'"):
        evaluate(net, data / "shapes_multiobj_3_3.h5", split="nope", images=1, progress=False)
    with pytest.raises(ValueError, match="has 6 images"):
        evaluate(net, data / "shapes_multiobj_3_3.h5", images=7, progress=False)
    with pytest.raises(FileNotFoundError, match="hnnwb data make"):
        evaluate(net, data / "missing.h5", images=1, progress=False)


def test_scores_by_overlap_bins_the_seed_mean_of_each_image(data, net):
    f = data / "shapes_multiobj_3_3.h5"
    r = evaluate(net, f, images=6, seeds=(0, 1), cycles=3, progress=False)
    by = scores_by_overlap(r, bins=(0, 5, 12))
    overlap = read_overlap(f, "test", stop=6).reshape(6, -1).sum(axis=1)
    assert by["overlap"] == overlap.tolist() and by["source"] == "overlap mask"
    ami = np.array(r["ami"]["per_image"], dtype=float)[:, -1].reshape(2, 6).mean(axis=0)
    assert np.allclose(by["ami"], ami)
    assert [(b["lo"], b["hi"], b["label"]) for b in by["bins"]] == [(0, 5, "0-4"), (5, 12, "5-11"), (12, None, "12+")]
    assert sum(b["n"] for b in by["bins"]) == 6
    for b in by["bins"]:
        inside = (overlap >= b["lo"]) & (overlap < (b["hi"] or 10**9))
        assert b["n"] == inside.sum()
        assert (b["overlap_mean"] is None) if not inside.any() else b["overlap_mean"] == overlap[inside].mean()
        assert (b["ami"] is None) if not inside.any() else b["ami"] == pytest.approx(ami[inside].mean())
    json.dumps(by)


def test_scores_by_overlap_splits_the_ami_decomposition_per_image(data, net):
    r = evaluate(net, data / "shapes_multiobj_3_3.h5", images=6, seeds=(0, 1), cycles=3, progress=False)
    share = np.array(r["silent_share"]["last_per_image"], dtype=float)
    assert share.shape == (12,) and share.mean() == pytest.approx(r["silent_share_mean"])
    assert len(r["bound_ami"]["last_per_image"]) == 12
    by = scores_by_overlap(r, bins=(0, 5))
    assert np.allclose(by["silent_share"], share.reshape(2, 6).mean(axis=0))
    overlap = np.array(by["overlap"])
    for b in by["bins"]:
        inside = (overlap >= b["lo"]) & (overlap < (b["hi"] or 10**9))
        expect = np.array(by["silent_share"])[inside]
        assert (b["silent_share"] is None) if not inside.any() else b["silent_share"] == pytest.approx(expect.mean())
    old = {**r, "silent_share": {k: v for k, v in r["silent_share"].items() if k != "last_per_image"}}
    assert "silent_share" not in scores_by_overlap(old)  # results written before the split still bin AMI


def test_scores_by_overlap_without_a_mask_counts_unlabelled_on_pixels(data, net, tmp_path, monkeypatch):
    f = data / "shapes_multiobj_3_3.h5"
    r = evaluate(net, f, images=4, seeds=(0,), cycles=3, progress=False)
    monkeypatch.setattr("workbench.experiments.gust.read_overlap", lambda *a, **k: None)  # an authors' file
    by = scores_by_overlap(r)
    images, labels = read_split(f, "test", stop=4)
    assert by["source"] == "unlabelled on-pixels"
    assert by["overlap"] == ((images > 0) & (labels == 0)).reshape(4, -1).sum(axis=1).tolist()
    with pytest.raises(ValueError, match="dataset-protocol"):
        scores_by_overlap({**r, "protocol": "reference"})
    with pytest.raises(ValueError, match="left edges"):
        scores_by_overlap(r, bins=(1, 5))
    with pytest.raises(ValueError, match="seeds x images"):
        scores_by_overlap({**r, "images": 3})


def test_reference_protocol_runs_one_image_under_several_seeds(data, net):
    r = reference_protocol(net, data / "shapes_multiobj_3_3.h5", image_index=10, runs=3, cycles=3)
    assert r["protocol"] == "reference" and r["image_index"] == 10 and r["seeds"] == [0, 1, 2]
    assert np.array(r["ami"]["per_image"]).shape == (3, 2)


def test_curve_stats_is_the_student_t_interval_without_nans():
    v = np.array([[0.1, np.nan], [0.3, 0.5], [0.8, 0.7]])
    s = curve_stats(v)
    col = np.array([0.1, 0.3, 0.8])
    half = student_t.ppf(0.975, 2) * col.std(ddof=1) / np.sqrt(3)
    assert s["mean"][0] == pytest.approx(col.mean()) and s["ci_high"][0] == pytest.approx(col.mean() + half)
    assert s["n"] == [3, 2] and s["mean"][1] == pytest.approx(0.6)


def test_generalisation_table_fills_only_cells_that_were_run(data, net):
    files = {2: data / "shapes_multiobj_3_2.h5", 3: data / "shapes_multiobj_3_3.h5", 4: data / "absent.h5"}
    t = generalisation_table({3: net}, data, images=2, seeds=(0,), cycles=3, progress=False, test_files=files)
    assert t["train"] == [2, 3, 4] and t["test"] == [2, 3, 4]
    assert t["ami"][0] == [None, None, None] and t["ami"][2] == [None, None, None]
    assert t["ami"][1][0] is not None and t["ami"][1][1] is not None and t["ami"][1][2] is None
    assert t["silent_share"][1][0] is not None and t["silent_share"][1][2] is None and t["bound_ami"][0][0] is None
    assert "train2" in t["missing"] and "train4" in t["missing"] and "test4" in t["missing"]
    assert "--objects 2" in t["missing"]["train2"]


def test_compare_nets_scores_every_net_on_the_same_rows_and_pairs_them(data, net):
    other = GustNet(seed=1)
    kw = dict(images=3, seeds=(0, 1), cycles=3, progress=False)
    c = compare_nets({"a": net, "b": other}, data / "shapes_multiobj_3_3.h5", **kw)
    assert [r["name"] for r in c["rows"]] == ["a", "b"] and c["images"] == 3 and c["seeds"] == [0, 1]
    alone = evaluate(other, data / "shapes_multiobj_3_3.h5", **kw)
    assert c["results"]["b"]["ami"]["per_image"] == alone["ami"]["per_image"]
    a, b = (np.array([r[-1] for r in c["results"][k]["ami"]["per_image"]], dtype=float) for k in ("a", "b"))
    first, second = c["rows"]
    assert first["ami_diff"]["mean"] == pytest.approx(0.0) and second["ami_diff"]["n"] == 6
    assert second["ami_diff"]["mean"] == pytest.approx(float(np.mean(b - a)))
    assert second["ami_diff"]["ci_low"] <= second["ami_diff"]["mean"] <= second["ami_diff"]["ci_high"]
    assert second["ami_mean"] == alone["ami_mean"] and second["budget"] is None
    lines = comparison_text(c)
    assert len(lines) == 2 and "AMI minus a's" in lines[1] and "minus" not in lines[0]
    json.dumps(c)


def test_format_score_marks_undefined_scores_as_nan():
    assert format_score(0.74349) == "0.743" and format_score(0.0471, sign=True) == "+0.047"
    assert format_score(None) == format_score(float("nan")) == "nan"


def test_compare_nets_checks_every_path_before_running(data, net, tmp_path):
    with pytest.raises(FileNotFoundError, match="no GUST checkpoint"):
        compare_nets({"a": net, "gone": tmp_path / "nothing"}, data / "shapes_multiobj_3_3.h5", images=1,
                     progress=False)
    with pytest.raises(ValueError, match="at least one net"):
        compare_nets({}, data / "shapes_multiobj_3_3.h5")


def test_figure_record_keeps_kmedoids_labels(data, net):
    f = figure_record(net, data / "shapes_multiobj_3_3.h5", 10, seeds=[0, 1], cycles=3)
    rec = f["record"]
    assert tuple(rec.spikes.shape) == (30, 2, 784) and rec.labels is not None
    assert tuple(f["scores"].pred.shape) == (2, 2, 784)


def test_mixed_cluster_ami_costs_more_with_fewer_objects():
    assert mixed_cluster_ami(3, 0.0) == pytest.approx(1.0)
    by_n = [mixed_cluster_ami(n, 0.29) for n in (2, 3, 4)]
    assert by_n == sorted(by_n) and by_n[0] < 0.6 < by_n[2] < 0.7
    shares = [mixed_cluster_ami(3, f) for f in (0.1, 0.2, 0.3)]
    assert shares == sorted(shares, reverse=True)
    with pytest.raises(ValueError, match="share"):
        mixed_cluster_ami(3, 1.5)


def test_slot_offsets_count_single_spike_pixels_around_each_objects_modal_slot():
    T, N = 10, 12
    labels = torch.tensor([[1] * 5 + [2] * 5 + [0, 0]])
    spikes = torch.zeros(2 * T, 1, N, dtype=torch.bool)  # scored: cycle 1 (the last)
    for px, slot in enumerate([3, 3, 3, 4, 2]):  # object 1: modal slot 3, one pixel late, one early
        spikes[T + slot, 0, px] = True
    for px, slot in zip(range(5, 9), [0, 0, 9, 5]):  # object 2: modal slot 0; slot 9 is one early (mod T)
        spikes[T + slot, 0, px] = True
    spikes[T + 1, 0, 9] = spikes[T + 6, 0, 9] = True  # two spikes: not counted
    spikes[T + 7, 0, 10] = True  # label 0: not counted
    counts = slot_offsets(spikes, labels, T=T)
    assert counts.tolist() == [5, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert slot_offsets(spikes, labels, T=T, cycle=0).sum() == 0  # a silent cycle
    with pytest.raises(ValueError, match="labels"):
        slot_offsets(spikes, labels[:, :5], T=T)


def test_evaluate_reports_slot_offsets_as_shares(data, net):
    r = evaluate(net, data / "shapes_multiobj_3_3.h5", images=3, seeds=(0,), cycles=3, progress=False)
    assert len(r["slot_offsets"]) == 10 and sum(r["slot_offsets"]) in (0, pytest.approx(1.0))


def test_authors_curve_has_29_cycles():
    assert len(AUTHORS_CURVE["ami"]) == len(AUTHORS_CURVE["synscore"]) == 29
    assert AUTHORS_CURVE["ami"][-1] == 0.795 and AUTHORS_CURVE["synscore"][-1] == 0.806


def test_cli_eval_writes_result_json(data, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["gust", "eval", "--data", str(data / "shapes_multiobj_3_3.h5"), "--images", "2", "--cycles", "3",
               "--net", "untrained", "--out", str(out), "--no-progress"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["cycles"] == [1, 2] and "ami_mean" in r and "synscore_mean" in r
    assert sum(b["n"] for b in r["by_overlap"]["bins"]) == 2
    printed = capsys.readouterr().out
    assert "AMI by overlap pixels per image: 0 px" in printed
    assert f"cycle 2: {r['silent_share_mean']:.3f} of the object pixels are grouped with the silent pixels" in printed


def test_cli_untrained_baseline_takes_the_image_size_of_the_data(tmp_path):
    """A chance-level baseline on images that are not 28x28: the untrained net is sized to the split."""
    from workbench.data.store import write_splits

    images = np.zeros((2, 12, 10), np.uint8)
    labels = np.zeros_like(images)
    images[:, 1:5, 1:5] = labels[:, 1:5, 1:5] = 1
    images[:, 7:11, 5:9] = 1
    labels[:, 7:11, 5:9] = 2
    data = write_splits(tmp_path / "small.h5", {"test": (images, labels)})
    out = tmp_path / "r.json"
    assert main(["gust", "eval", "--data", str(data), "--images", "2", "--cycles", "3", "--net", "untrained",
                 "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["cycles"] == [1, 2]


def test_cli_compare_scores_each_net_against_the_first(data, tmp_path, capsys):
    from workbench.checkpoints import save_checkpoint
    from workbench.models.gust import gust_config

    other = GustNet(seed=2)
    save_checkpoint(tmp_path / "run" / "best.pt", other, gust_config(other))
    out = tmp_path / "c.json"
    args = ["gust", "compare", "--data", str(data / "shapes_multiobj_3_3.h5"), "--images", "2", "--cycles", "3",
            "--net", "untrained", "--net", str(tmp_path / "run"), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert [row["name"] for row in r["rows"]] == ["untrained", str(tmp_path / "run")]
    assert r["rows"][1]["ami_diff"]["n"] == 2
    assert "AMI minus untrained's on the same (seed, image) rows" in capsys.readouterr().out
    twice = args[:args.index(str(tmp_path / "run"))] + ["untrained", "--out", str(out)]
    assert main(twice) == 2
    assert "names the same net twice" in capsys.readouterr().err
