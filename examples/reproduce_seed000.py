"""Reproduces seed report 000's table with `keras_poison.experiments`.

Seed report 000 trains a VGG-like CNN on CIFAR-10 clean, under 20% random
and targeted label flipping and under class-wise clean-label noise, then
against that noise with augmentation, label smoothing and early stopping.
This script runs those five scenarios (and, with `--with-defences`, this
library's defence against each attack) for several seeds, and prints where
the table, the JSON results and the plots are.

Offline, with CIFAR-10 saved as a `.npz` (`x_train`, `y_train`, `x_test`,
`y_test`):

    python examples/reproduce_seed000.py --data cifar10_subset.npz --epochs 30 --seeds 3

Without `--data` it runs on the 8x8 digits that ship with scikit-learn, with
tiny settings (a minute or two on a laptop CPU):

    python examples/reproduce_seed000.py

Stop it at any time and start it again with the same arguments: finished
cells are kept in `results.json` and skipped.
"""

import argparse
import os
import sys

SEED_SCENARIOS = [
    "baseline",
    "random_flip",
    "targeted_flip",
    "class_pattern",
    "class_pattern_defended",
]
OUR_DEFENCES = ["random_flip_sanitized", "targeted_flip_gce", "class_pattern_removal"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a CIFAR-10 .npz; default: packaged digits")
    parser.add_argument("--dataset", default=None, help="default: cifar10 with --data, else digits")
    parser.add_argument("--epochs", type=int, default=None, help="default: 30 with --data, else 3")
    parser.add_argument("--seeds", type=int, default=None, help="default: 3 with --data, else 1")
    parser.add_argument("--out", default=None, help="default: runs/seed000_<dataset>")
    parser.add_argument(
        "--scenarios",
        default=",".join(SEED_SCENARIOS),
        help="comma-separated scenario names (default: the seed's five)",
    )
    parser.add_argument(
        "--with-defences", action="store_true", help=f"also run {', '.join(OUR_DEFENCES)}"
    )
    args = parser.parse_args(argv)
    offline_cifar = args.data is not None
    args.dataset = args.dataset or ("cifar10" if offline_cifar else "digits")
    args.epochs = args.epochs or (30 if offline_cifar else 3)
    args.seeds = args.seeds or (3 if offline_cifar else 1)
    args.out = args.out or os.path.join("runs", f"seed000_{args.dataset}")
    args.scenarios = [s for s in args.scenarios.split(",") if s.strip()]
    if args.with_defences:
        args.scenarios += OUR_DEFENCES
    return args


def main(argv=None):
    args = parse_args(argv)
    from keras_poison import experiments

    try:
        experiments.run(
            args.scenarios,
            dataset=args.dataset,
            data=args.data,
            epochs=args.epochs,
            seeds=args.seeds,
            out=args.out,
        )
    except experiments.ExperimentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = os.path.join(args.out, "table.md")
    print(f"\nThe table is in {table}; every figure in {os.path.join(args.out, 'results.json')}; "
          f"plots in {os.path.join(args.out, 'plots')}.\n")
    with open(table) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
