"""`hnnwb snn-iir ...` commands (registered by `workbench.cli.build_parser`).

MNIST classifiers (specs/snn_iir.md §3): `train`, `eval`; the numeric oracles of §2: `oracles`.
The associative-memory actions live in their own section at the end of `register`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.cli import _add, _group
from workbench.cli_snn_iir_assoc import register_assoc

MODEL_NAMES = ["mlp1", "mlp2", "mlp1_poisson", "mlp2_poisson"]


# --- MNIST classifiers -----------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from workbench.experiments.snn_iir import TrainConfig, mnist_splits, smoke_config, train_snn_mlp
    from workbench.runtime import configure_threads

    threads = configure_threads(args.threads)
    config = smoke_config() if args.smoke else TrainConfig()
    changes = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed), ("augment", args.augment),
                                 ("batch_size", args.batch_size), ("lr", args.lr), ("max_iters", args.max_iters))
               if v is not None}
    config = dataclasses.replace(config, **changes)
    overrides = {} if args.parametrisation is None else {"parametrisation": args.parametrisation}
    out = args.out or Path("runs") / "snn_iir" / (f"{args.model}_smoke" if args.smoke else args.model)
    splits = mnist_splits(smoke=args.smoke, cache_dir=args.cache_dir)
    print(f"snn-iir train {args.model}: train {len(splits['train'])}, val {len(splits['val'])} images; "
          f"{config}; threads {threads}; out {out}", flush=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    result = train_snn_mlp(args.model, splits, out, config, resume=args.resume, device=args.device,
                           progress=not args.no_progress, model_overrides=overrides, log=log)
    h = result.history
    print(f"trained {args.model}: best epoch {result.best_epoch} (val acc {result.best_val_accuracy:.4f}) of "
          f"{len(h['train_loss'])} in {h['seconds']:.1f} s; wrote {result.best_path}, {result.last_path}, "
          f"{result.history_path}", flush=True)
    if args.no_test:
        print(f"Test it: hnnwb snn-iir eval --model {args.model} --checkpoint {result.best_path} "
              f"--out {Path(out) / 'test.json'}")
        return 0
    # The selected (best validation) epoch is scored once on every test image.
    from workbench.experiments.snn_iir import evaluate_checkpoint
    from workbench.fileio import write_json

    scores = evaluate_checkpoint(args.model, result.best_path, splits=splits, split="test", device=args.device)
    write_json(Path(out) / "test.json", scores)
    sd = f" ± {100 * scores['accuracy_sd']:.2f}" if "accuracy_sd" in scores else ""
    print(f"best epoch {scores['epoch']} on {scores['n_images']} test images: accuracy {100 * scores['accuracy']:.2f} %"
          f"{sd}; tie rate {100 * scores['tie_rate']:.2f} %; wrote {Path(out) / 'test.json'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from workbench.experiments.snn_iir import evaluate_checkpoint
    from workbench.fileio import write_json
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    result = evaluate_checkpoint(args.model, args.checkpoint, split=args.split, batch_size=args.batch_size,
                                 device=args.device, progress=not args.no_progress, smoke=args.smoke,
                                 cache_dir=args.cache_dir)
    sd = f" ± {100 * result['accuracy_sd']:.2f}" if "accuracy_sd" in result else ""
    print(f"{args.model} on {result['n_images']} {args.split} images: accuracy {100 * result['accuracy']:.2f} %{sd}; "
          f"tie rate {100 * result['tie_rate']:.2f} %; spikes/image {result.get('spikes_per_image')}; "
          f"max |pole| {result['max_pole_modulus']:.4f}; {result['seconds']:.1f} s")
    if args.out is not None:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


def _cmd_oracles(args: argparse.Namespace) -> int:
    from workbench.experiments.snn_iir import oracle_table

    table = oracle_table()
    if args.json:
        json.dump(table, sys.stdout, indent=2)
        print()
        return 0
    for row in table["filters"]:
        print(f"{row['filter']:<22} h[0..7] {' '.join(f'{v:.4f}' for v in row['h'])}  peak {row['peak']:.5f} "
              f"(k={row['peak_k']})  DC {row['dc_gain']:.5f}  step {' '.join(f'{v:.4f}' for v in row['step'])}")
    for row in table["coefficients"]:
        print(f"tau {row['tau_m']:g}/{row['tau_s']:g}: dm {row['dm']:.6f} ds {row['ds']:.6f} a1 {row['alpha_1']:.6f} "
              f"a2 {row['alpha_2']:.6f} b1 {row['beta_1']:.6f} v0 {row['v0']:.6f}")
    for row in table["neuron"]:
        print(f"neuron I={row['I']:<5g} membrane_filter={str(row['membrane_filter']):<5} {row['train']} "
              f"({row['spikes']} spikes)")
    for row in table["surrogate"]:
        print(f"g({row['v']:g}) = {row['g']:.6g}")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoke", action="store_true", help="5k MNIST subset (350/50/100 per class), 1 epoch of 20 iterations")
    p.add_argument("--cache-dir", default="data/mnist", help="MNIST cache (default data/mnist; see `hnnwb data get mnist`)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    group = _group(sub, "snn-iir", "SNN-IIR: MNIST classifiers, filter/neuron oracles (and associative memory)")

    p = _add(group, "train", _cmd_train, "train an SNN-IIR MNIST classifier (faithful recipe: 100 epochs; "
             "keeps best.pt by validation accuracy, last.pt for --resume, history.json)")
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/snn_iir/MODEL)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (same trajectory as one run)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 100; SMOKE 1)")
    p.add_argument("--max-iters", type=int, default=None, help="cap on iterations per epoch (SMOKE 20)")
    p.add_argument("--seed", type=int, default=None, help="seed of init and every random draw (default 2)")
    p.add_argument("--augment", default=None, choices=["twice", "once", "none"], help="augmentation (default twice)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4)")
    p.add_argument("--parametrisation", default=None, choices=["free", "stable", "projected"],
                   help="IIR coefficient parametrisation (default free, the reference's)")
    p.add_argument("--no-test", action="store_true", help="do not score the best epoch on the test set at the end")
    _add_common(p)

    p = _add(group, "eval", _cmd_eval, "score a checkpoint on all 10,000 MNIST test images (accuracy, per-class "
             "accuracy, confusion, tie rate, spikes per layer)")
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint (default data/checkpoints/snn_iir_MODEL.pt)")
    p.add_argument("--out", type=Path, default=None, help="write RESULT.json")
    p.add_argument("--split", default="test", choices=["test", "val"], help="split to score (default test)")
    p.add_argument("--batch-size", type=int, default=1000, help="images per batch (results do not depend on it)")
    _add_common(p)

    p = _add(group, "oracles", _cmd_oracles, "print the spec's §2 oracle values computed by our filters and neuron")
    p.add_argument("--json", action="store_true", help="print JSON")

    # --- associative memory (assoc-train, assoc-eval): added by the associative-memory engineer below ---
    register_assoc(group)
