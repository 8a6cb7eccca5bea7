"""`hnnwb snn-iir assoc-train` / `assoc-eval` / `assoc-patterns`: the SNN-IIR associative memory (spec §4).

Registered by ``workbench.cli_snn_iir.register`` through ``register_assoc(group_sub)``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from workbench.cli import _add


def assoc_train(args: argparse.Namespace) -> int:
    from workbench.experiments.snn_iir_assoc import PRESETS, smoke_config, train_assoc, with_patterns_file
    from workbench.runtime import configure_threads

    threads = configure_threads(args.threads)
    config = smoke_config() if args.smoke else PRESETS[args.preset]
    changes = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size),
                                 ("max_iters", args.max_iters), ("parametrisation", args.parametrisation),
                                 ("clip_grad_norm", args.clip_grad_norm), ("torch_seed", args.seed),
                                 ("cue_seed", args.cue_seed)) if v is not None}
    if args.no_fallback:
        changes["fallback"] = "off"
    config = dataclasses.replace(config, **changes)
    if args.patterns is not None:
        config = with_patterns_file(config, args.patterns)
    out = args.out or Path("runs") / "snn_iir" / config.preset
    print(f"snn-iir assoc-train {config.preset}: {config.epochs} epochs x {config.iterations_per_epoch} iterations "
          f"(batch {config.batch_size}, T {config.steps}); threads {threads}; out {out}", flush=True)
    result = train_assoc(config, out, resume=args.resume, progress=not args.no_progress, device=args.device,
                         log=lambda line: print(line, flush=True))
    h = result.history
    print(f"trained {config.preset}: best epoch {result.best_epoch} (val loss {result.best_val_loss:.5f}, silent "
          f"baseline {h['silent_baseline']:.4f}) of {len(h['train_loss'])} in {h['seconds']:.1f} s; wrote "
          f"{result.best_path}, {result.last_path}, {result.history_path}. Test it: hnnwb snn-iir assoc-eval "
          f"--checkpoint {result.best_path} --out {Path(out) / 'test.json'}")
    return 0


def assoc_eval(args: argparse.Namespace) -> int:
    from workbench.experiments.snn_iir_assoc import evaluate_checkpoint
    from workbench.fileio import write_json
    from workbench.runtime import configure_threads

    configure_threads(args.threads)
    splits = [args.split] + [s for s in ("test", "clean") if s != args.split]
    result = evaluate_checkpoint(args.checkpoint, splits=splits, n=args.n, batch_size=args.batch_size,
                                 device=args.device, patterns_file=args.patterns)
    for name, s in result["splits"].items():
        print(f"{name:<5} {s['n_cues']:>5} cues: loss {s['loss']:.5f} (silent baseline {s['silent_baseline']:.5f}); "
              f"precision/recall (±{s['tolerance_steps']}) {s['precision']:.3f}/{s['recall']:.3f}; identification "
              f"{s['identification']:.3f}; spikes out/target {s['out_spikes_per_cue']:.0f}/"
              f"{s['target_spikes_per_cue']:.0f} per cue; {s['seconds']:.1f} s")
    print(f"max |pole| {result['max_pole_modulus']:.4f}")
    if args.out is not None:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


def assoc_patterns(args: argparse.Namespace) -> int:
    from workbench.data.spike_patterns import make_patterns, save_patterns, silent_baseline

    paths = save_patterns(args.out)
    patterns = make_patterns()
    counts = patterns.sum(dim=(1, 2)).int().tolist()
    print(f"ten patterns: spikes {counts}; silent baseline {silent_baseline(patterns):.5f}; wrote "
          f"{paths['images']}, {paths['contact_sheet']}")
    return 0


def register_assoc(group_sub: argparse._SubParsersAction) -> None:
    """Add the associative-memory actions to the `hnnwb snn-iir` group."""
    p = _add(group_sub, "assoc-train", assoc_train, "train the associative memory (300-500-200-500-300, T=300) on "
             "freshly corrupted cues; keeps best.pt by validation loss, last.pt for --resume, history.json")
    p.add_argument("--preset", default="assoc_long", choices=["assoc_ref", "assoc_long"],
                   help="assoc_long (acceptance: batch 32, 100 epochs, stable filters; default) or assoc_ref "
                   "(faithful: batch 64, 20 epochs, free coefficients)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/snn_iir/PRESET)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (same trajectory as one run)")
    p.add_argument("--smoke", action="store_true", help="tiny network, 100 steps, 3 iterations")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-iters", type=int, default=None, help="cap on iterations per epoch")
    p.add_argument("--parametrisation", default=None, choices=["free", "stable", "projected"],
                   help="filter coefficients: free (the reference's), stable (sigmoid decays, real poles in (0, 1)) or "
                   "projected (free steps, poles pulled inside |z| <= 0.995 after every step)")
    p.add_argument("--clip-grad-norm", type=float, default=None, help="gradient-norm clipping from the start")
    p.add_argument("--no-fallback", action="store_true", help="never roll back and escalate on divergence")
    p.add_argument("--seed", type=int, default=None, help="model-initialisation seed (default 2, the reference's)")
    p.add_argument("--cue-seed", type=int, default=None, help="seed of the training cues (default 0)")
    p.add_argument("--patterns", type=Path, default=None,
                   help="train on these pattern images instead of the project's ten: a [P, 300, 300] .npy, or an "
                   ".npz with key 'images' (row = neuron, column = time; the lattice mask is applied)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = _add(group_sub, "assoc-eval", assoc_eval, "score an associative-memory checkpoint: test loss on 1,000 "
             "freshly corrupted cues (seed 2002) beside the all-silent baseline, and on the 10 clean cues")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint (default data/checkpoints/snn_iir_assoc.pt)")
    p.add_argument("--out", type=Path, default=None, help="write RESULT.json")
    p.add_argument("--split", default="test", choices=["test", "val", "clean"], help="main split (default test)")
    p.add_argument("--n", type=int, default=None, help="number of corrupted cues (default: the split's size)")
    p.add_argument("--batch-size", type=int, default=64, help="cues per batch (results do not depend on it)")
    p.add_argument("--patterns", type=Path, default=None,
                   help="the pattern file a memory was trained with, when it has moved (its SHA-256 must match)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on <= 2 cores)")

    p = _add(group_sub, "assoc-patterns", assoc_patterns, "write the ten spike-pattern images (uint8, compressed .npz) and "
             "a PNG contact sheet")
    p.add_argument("--out", type=Path, default=Path("data/spike_patterns"), help="folder (default data/spike_patterns)")
