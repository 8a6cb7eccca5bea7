"""`hnnwb gust ...` commands (registered by `workbench.cli.build_parser`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from workbench.cli import _group


# --- train (GUST spec §4) ----------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from workbench.experiments.gust_train import run_train_command

    return run_train_command(args)


def _add_train(gust_sub: argparse._SubParsersAction) -> None:
    from workbench.cli import _add

    p = _add(gust_sub, "train", _cmd_train,
             "train a GUST network on shapes_multiobj_<objects>_3 (spec §4 recipe; writes best.pt, last.pt, "
             "history.json; --resume continues an interrupted run)")
    p.add_argument("--objects", type=int, default=3, help="objects per training scene (dataset "
                   "shapes_multiobj_<objects>_3; default 3)")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset HDF5 (default data/shapes_multiobj_<objects>_3.h5; made if missing)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/gust/train_<objects>)")
    p.add_argument("--batch-size", type=int, default=None, help="images per iteration (default 1024)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.01, tuned for batch 1024). "
                   "Adam is insensitive to the summed loss's scale, so do not scale it by 1024/B; smaller batches "
                   "need a lower rate (measured: batch 64 is unstable at 0.01 and trains at 0.0025)")
    p.add_argument("--lr-steps", default=None, metavar="EPOCH:FACTOR,...",
                   help="multiply the rate by FACTOR at the end of epoch index EPOCH (default 60:0.5,100:0.5,200:0.5; "
                   "'' for none). With --resume, steps at the epoch in progress or later may be added or changed, "
                   "e.g. one more halving for a run that has levelled off")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 400)")
    p.add_argument("--iterations", type=int, default=None,
                   help="stop after this many iterations in total (validates there); e.g. the short-training "
                   "smoke: --batch-size 64 --iterations 300")
    p.add_argument("--patience", type=int, default=None,
                   help="early-stopping patience in epochs (default 40); with --resume, a larger value continues "
                   "a run that stopped early")
    p.add_argument("--n-train", type=int, default=None, help="training images train_multi[0:n] (default 18000)")
    p.add_argument("--n-val", type=int, default=None, help="validation images, the next n (default 2000)")
    p.add_argument("--score-every", type=int, default=10, help="every this many epochs, log AMI and SynScore "
                   "of the grouping on --score-images test images (the training curve's coarse -> fine stages; "
                   "0 = off; default 10)")
    p.add_argument("--score-images", type=int, default=20, help="test images per periodic score (default 20)")
    p.add_argument("--dense", action="store_true", help="plain dense matrix products instead of the exact "
                   "sparse fast path (same values; for comparison, or if the sparse path is slower on a GPU)")
    p.add_argument("--seed", type=int, default=0, help="run seed (init, shuffling, corruption, noise)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt exactly where it stopped")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on <= 2 cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# --- eval and table (GUST spec §5, §10.5-10.6) ------------------------------------------------------------


def _eval_net(spec: str, data: Path, split: str = "test"):
    """``--net``: a checkpoint / run folder, or ``untrained`` (a fresh GustNet, seed 0: the chance level,
    sized to the images of ``split`` so that it is a baseline on any image size)."""
    if spec != "untrained":
        return Path(spec)
    from workbench.data.store import list_splits
    from workbench.models.gust import GustNet, GustParams

    shape = list_splits(data).get(split) if data.exists() else None
    n_pixels = math.prod(shape[1:]) if shape else GustParams().n_pixels  # else evaluate names the problem
    return GustNet(GustParams(n_pixels=n_pixels), seed=0)


def _cmd_eval(args: argparse.Namespace) -> int:
    from workbench.cli import _parse_seeds
    from workbench.experiments.gust import evaluate, scores_by_overlap
    from workbench.experiments.gust import format_score as fmt
    from workbench.fileio import write_json
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    net = _eval_net(args.net, args.data, args.split)
    result = evaluate(net, args.data, split=args.split, images=args.images, start=args.start,
                      seeds=_parse_seeds(args.seeds), cycles=args.cycles, batch_size=args.batch_size,
                      device=args.device, progress=not args.no_progress)
    result["by_overlap"] = scores_by_overlap(result)
    write_json(args.out, result)
    sec = result["seconds"]
    bins = ", ".join(f"{b['label']} px {fmt(b['ami'])} (n {b['n']})" for b in result["by_overlap"]["bins"])
    print(f"GUST {args.net} on {args.split}[{args.start}:{args.start + args.images}] x {len(result['seeds'])} seed(s): "
          f"cycle {result['cycles'][-1]} AMI {fmt(result['ami_mean'])}, SynScore {fmt(result['synscore_mean'])} "
          f"(last 5 cycles: {fmt(result['ami_mean_last5'])}, {fmt(result['synscore_mean_last5'])}; "
          f"{result['n_nan']} undefined SynScores); {sec['total']:.1f} s, scoring "
          f"{sec['scores_ms_per_image_cycle']:.2f} ms per (image, cycle); wrote {args.out}")
    print(f"AMI by overlap pixels per image: {bins}")
    parts = ", ".join(f"{b['label']} px {fmt(b.get('silent_share'))}/{fmt(b.get('bound_ami'))}"
                      for b in result["by_overlap"]["bins"])
    print(f"  the same bins, share of object pixels with the silent ones / AMI of the others: {parts}")
    print(f"cycle {result['cycles'][-1]}: {fmt(result['silent_share_mean'])} of the object pixels are grouped with "
          f"the silent pixels ({fmt(result['unfired_share_mean'])} silent themselves, the rest off their object's "
          f"slot: this caps AMI); AMI of the others {fmt(result['bound_ami_mean'])}")
    off = result["slot_offsets"]
    print(f"object pixels firing once, by slot relative to their object's modal slot: on it {100 * off[0]:.1f} %, "
          f"one slot early {100 * off[-1]:.1f} %, one late {100 * off[1]:.1f} %, further {100 * sum(off[2:-1]):.1f} %")
    return 0


def _add_eval(gust_sub: argparse._SubParsersAction) -> None:
    from workbench.cli import _add

    p = _add(gust_sub, "eval", _cmd_eval,
             "dataset protocol (spec §5.4): per-cycle AMI and SynScore (k-medoids under VP q=3) of the first N "
             "images of a split, mean and 95 percent CI, and the last cycle's scores by overlap pixels per image; "
             "writes RESULT.json")
    p.add_argument("--data", type=Path, required=True, help="dataset HDF5, e.g. data/shapes_multiobj_3_3.h5")
    p.add_argument("--split", default="test", help="split (default test; the README protocol uses train_multi "
                   "--start 10 --images 1 --seeds 0,1,2,3,4)")
    p.add_argument("--start", type=int, default=0, help="first image (default 0)")
    p.add_argument("--net", default="runs/gust/train_3", help="checkpoint, run folder (its best.pt) or "
                   "'untrained' (default runs/gust/train_3)")
    _add_protocol_options(p, "number of images from --start (default 100)")


def _add_protocol_options(p: argparse.ArgumentParser, images_help: str) -> None:
    """The options every dataset-protocol command shares (eval, compare, table)."""
    p.add_argument("--images", type=int, default=100, help=images_help)
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--cycles", type=int, default=30, help="cycles IT (default 30)")
    p.add_argument("--out", type=Path, required=True, help="result JSON")
    p.add_argument("--batch-size", type=int, default=50, help="images per forward (default 50); results do not "
                   "depend on it")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_compare(args: argparse.Namespace) -> int:
    from workbench.cli import _parse_seeds
    from workbench.experiments.gust import compare_nets, comparison_text
    from workbench.fileio import write_json
    from workbench.runtime import configure_threads

    if len(set(args.net)) != len(args.net):
        raise ValueError(f"--net names the same net twice: {args.net}")
    configure_threads(args.threads)
    result = compare_nets({spec: _eval_net(spec, args.data) for spec in args.net}, args.data, images=args.images,
                          seeds=_parse_seeds(args.seeds), cycles=args.cycles, batch_size=args.batch_size,
                          device=args.device, progress=not args.no_progress)
    write_json(args.out, result)
    print(f"{args.data} test[0:{args.images}] x {len(result['seeds'])} seed(s), cycle {args.cycles - 1}:")
    print("\n".join(comparison_text(result)))
    print(f"wrote {args.out}")
    return 0


def _add_compare(gust_sub: argparse._SubParsersAction) -> None:
    from workbench.cli import _add

    p = _add(gust_sub, "compare", _cmd_compare,
             "the dataset protocol for several nets on the same test images and seeds, with each net's paired "
             "AMI / SynScore difference to the first; writes RESULT.json")
    p.add_argument("--data", type=Path, required=True, help="dataset HDF5, e.g. data/shapes_multiobj_3_3.h5")
    p.add_argument("--net", action="append", required=True, help="checkpoint, run folder (its best.pt) or "
                   "'untrained'; give it once per net, the first is the baseline of the paired differences")
    _add_protocol_options(p, "test images (default 100)")


def _cmd_table(args: argparse.Namespace) -> int:
    from workbench.cli import _parse_seeds
    from workbench.experiments.gust import budget_text, generalisation_table
    from workbench.fileio import write_json
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    pattern = args.nets or str(Path(args.runs) / "train_{n}")
    if "{n}" not in pattern:
        raise ValueError(f"--nets {pattern!r} must contain {{n}} (the training object count), e.g. runs/gust/train_{{n}}")
    nets = {n: Path(pattern.format(n=n)) for n in (2, 3, 4)}
    result = generalisation_table(nets, args.data_dir, images=args.images, seeds=_parse_seeds(args.seeds),
                                  cycles=args.cycles, batch_size=args.batch_size, device=args.device,
                                  progress=not args.no_progress)
    write_json(args.out, result)
    for name, values in (("AMI", result["ami"]), ("SynScore", result["synscore"]),
                         ("object pixels grouped with the silent pixels", result["silent_share"]),
                         ("AMI of the other object pixels", result["bound_ami"])):
        print(f"{name} at the last cycle (rows: train 2/3/4 objects, columns: test {result['test']}):")
        for n, row in zip(result["train"], values):
            print(f"  train {n}: " + "  ".join("  -  " if v is None else f"{v:.3f}" for v in row))
    for n, budget in result["budget"].items():
        print(f"  train {n} net {nets[n]}: {budget_text(budget)}")
    for what, cmd in result["missing"].items():
        print(f"missing {what}: {cmd}")
    print(f"wrote {args.out}")
    return 0


def _add_table(gust_sub: argparse._SubParsersAction) -> None:
    from workbench.cli import _add

    p = _add(gust_sub, "table", _cmd_table,
             "combinatorial generalisation (spec §10.6): nets RUNS/train_{2,3,4} on the test sets of "
             "DATA_DIR/shapes_multiobj_3_{2,3,4}.h5; missing cells are reported with the command that makes them")
    p.add_argument("--runs", type=Path, default=Path("runs/gust"), help="folder with train_2, train_3, train_4")
    p.add_argument("--nets", default=None, help="net of each row as a pattern with {n} = training objects, e.g. "
                   "data/checkpoints/gust_table_{n} (the shipped equal-budget nets); overrides --runs")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="folder with the test files")
    _add_protocol_options(p, "test images per cell (default 100)")


def _cmd_pack(args: argparse.Namespace) -> int:
    from workbench.models.gust import pack_gust

    best = pack_gust(args.net, args.out, dtype=args.dtype)
    print(f"wrote {best} ({best.stat().st_size:,} bytes, weights as {args.dtype})"
          + (f" and {args.out / 'history.json'}" if (args.out / "history.json").exists() else ""))
    return 0


def _add_pack(gust_sub: argparse._SubParsersAction) -> None:
    from workbench.cli import _add
    from workbench.models.gust import PACK_DTYPES

    p = _add(gust_sub, "pack", _cmd_pack,
             "a compact weights-only copy of a GUST checkpoint for shipping (OUT/best.pt with float16 weights, "
             "plus the run's history.json); evaluate the packed file for the numbers you report")
    p.add_argument("net", type=Path, help="checkpoint or run folder (its best.pt)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--dtype", default="float16", choices=sorted(PACK_DTYPES), help="stored dtype (default float16)")


def register(sub: argparse._SubParsersAction) -> None:
    gust_sub = _group(sub, "gust", "GUST: train the network and evaluate its grouping")
    _add_train(gust_sub)
    _add_eval(gust_sub)
    _add_compare(gust_sub)
    _add_table(gust_sub)
    _add_pack(gust_sub)
