"""`hnnwb`: the workbench's command line.

Each subcommand is a small function over the library; results are written as JSON or HDF5 (atomically)
and a one-line summary is printed. Every subcommand has ``--help``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from workbench import __version__
from workbench.fileio import write_json


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from workbench.runtime import configure_threads, resolve_device

    threads = configure_threads(args.threads)
    info = {
        "hnn_workbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(resolve_device("auto")),
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": threads,
    }
    print(json.dumps(info, indent=2))
    return 0


# --- data ------------------------------------------------------------------------------------------
def _cmd_data_make(args: argparse.Namespace) -> int:
    from workbench.data import bars
    from workbench.data.store import write_splits

    if args.name != "bars":
        raise SystemExit(f"unknown dataset {args.name!r}; available now: bars")
    start = time.perf_counter()
    splits = bars.bars_splits(seed=args.seed, n_train=args.n_train, n_test=args.n_test, n_single=args.n_single)
    out = args.out or Path("data") / "bars.h5"
    write_splits(out, splits, attrs={"generator": "workbench.data.bars", "seed": args.seed})
    sizes = ", ".join(f"{k} {v[0].shape[0]}" for k, v in splits.items())
    print(f"wrote {out} ({sizes}) in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from workbench.data.store import list_splits, read_split

    summary = {}
    for name, shape in list_splits(args.file).items():
        images, labels = read_split(args.file, name, stop=min(shape[0], 1000))
        flat = images.reshape(images.shape[0], -1)
        summary[name] = {
            "shape": list(shape),
            "on_pixels_mean(first<=1000)": round(float(flat.sum(1).mean()), 2),
            "max_label": int(labels.max()) if labels.size else 0,
        }
    print(json.dumps(summary, indent=2))
    return 0


# --- neurons ---------------------------------------------------------------------------------------
def _cmd_neuron_list(args: argparse.Namespace) -> int:
    from workbench.neurons.explore import INPUT_KINDS, NEURON_MODELS

    for key, spec in NEURON_MODELS.items():
        params = ", ".join(f"{p.name}={p.default:g}" for p in spec.params)
        print(f"{key:18s} {spec.title}\n{'':18s} params: {params}")
    print(f"input kinds: {', '.join(INPUT_KINDS)}")
    return 0


def _parse_assignments(items: list[str]) -> dict[str, float]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param expects NAME=VALUE, got {item!r}")
        try:
            params[key] = float(value)
        except ValueError:
            raise SystemExit(f"--param {key}: {value!r} is not a number") from None
    return params


def _cmd_neuron_simulate(args: argparse.Namespace) -> int:
    from workbench.neurons.explore import simulate_neuron

    trace = simulate_neuron(
        args.model, _parse_assignments(args.param), input_kind=args.input, T=args.steps, seed=args.seed,
        amplitude=args.amplitude,
    )
    spike_steps = np.flatnonzero(trace.spikes).tolist()
    print(f"{args.model}: {len(spike_steps)} spikes in {args.steps} steps at {spike_steps[:20]}"
          + (" ..." if len(spike_steps) > 20 else ""))
    if args.out:
        payload = {k: v for k, v in vars(trace).items() if k != "extra"}
        payload["extra"] = trace.extra
        write_json(args.out, payload)
        print(f"wrote {args.out}")
    return 0


# --- records and the tour --------------------------------------------------------------------------
def _cmd_record_info(args: argparse.Namespace) -> int:
    from workbench.record import SpikeRecord

    rec = SpikeRecord.from_hdf5(args.file)
    print(repr(rec))
    print(json.dumps(rec.meta, indent=2))
    return 0


def _cmd_tour(args: argparse.Namespace) -> int:
    from workbench.experiments.tour import run_tour
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    result = run_tour(smoke=not args.full, seed=args.seed, device=args.device)
    print(f"tour: mean AMI {result.ami_mean:.3f} over {len(result.ami)} images")
    if args.out:
        write_json(args.out, result.summary())
        print(f"wrote {args.out}")
    if args.record:
        result.record.to_hdf5(args.record)
        print(f"wrote {args.record}")
    return 0


# --- parser ----------------------------------------------------------------------------------------
def _add(sub: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hnnwb", description="HNN Workbench command line")
    ap.add_argument("--version", action="version", version=f"hnn-workbench {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = _add(sub, "info", _cmd_info, "print versions, device and thread settings")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")

    data = sub.add_parser("data", help="generate and inspect datasets", description="generate and inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = _add(data_sub, "make", _cmd_data_make, "generate a dataset in the papers' HDF5 layout")
    p.add_argument("name", choices=["bars"], help="dataset name")
    p.add_argument("--out", type=Path, default=None, help="output .h5 (default data/NAME.h5)")
    p.add_argument("--seed", type=int, default=471958, help="generator seed (the paper's by default)")
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--n-single", type=int, default=200)
    p = _add(data_sub, "info", _cmd_data_info, "list the splits of an HDF5 dataset with basic statistics")
    p.add_argument("file", type=Path)

    neuron = sub.add_parser("neuron", help="explore neuron models", description="explore neuron models")
    neuron_sub = neuron.add_subparsers(dest="neuron_command", metavar="ACTION", required=True)
    _add(neuron_sub, "list", _cmd_neuron_list, "list neuron models, their parameters and input kinds")
    p = _add(neuron_sub, "simulate", _cmd_neuron_simulate, "simulate one neuron and print its spike times")
    p.add_argument("--model", default="lif", help="model key (see `hnnwb neuron list`)")
    p.add_argument("--input", default=None, help="input kind (default: the model's own)")
    p.add_argument("--amplitude", type=float, default=1.0, help="input amplitude")
    p.add_argument("--steps", type=int, default=100, help="number of time steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model parameter (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="write the full trace as JSON")

    record = sub.add_parser("record", help="inspect spike records", description="inspect spike records")
    record_sub = record.add_subparsers(dest="record_command", metavar="ACTION", required=True)
    p = _add(record_sub, "info", _cmd_record_info, "summarise a SpikeRecord HDF5 file")
    p.add_argument("file", type=Path)

    p = _add(sub, "tour", _cmd_tour, "run the five-minute tour: train a toy DAE, bind bars by spike timing, score AMI")
    p.add_argument("--full", action="store_true", help="larger settings than the quick default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write a JSON summary")
    p.add_argument("--record", type=Path, default=None, help="write the binding SpikeRecord (HDF5)")
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:
        # Library errors already say what is wrong and how to fix it; show them without a traceback.
        print(f"hnnwb: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
