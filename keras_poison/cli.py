"""The `keras-poison` command.

`keras-poison demo` tells the library's story on data that ships with the
install (5,000 MNIST digits, or scikit-learn's 8x8 digits; no download): each
attack's damage, what a detector finds against the ground truth, and what a
defence wins back, in one table and one PNG (see `keras_poison.demo`).
CIFAR-10 from a local `.npz` works too (`--dataset cifar10 --data PATH`).

`keras-poison run SCENARIO… --out DIR` runs attack and defence scenarios
(seed report 000's table, the class-oriented paper's experiments) for
several seeds, resumably, and writes `results.json`, `table.md` and PNG
plots; `keras-poison run --list` lists the scenarios. See
`keras_poison.experiments`.

`keras-poison manifest create` fingerprints every example of a local `.npz`
data set, and `keras-poison manifest verify` reports which examples were
modified, relabelled, added or removed since (exit status 0 when clean, 1
when something changed, 2 on errors); see `keras_poison.defences.integrity`.

The arguments are parsed and checked by `keras_poison_cli` (the entry point,
outside the package so that `--help` and argument errors answer before
TensorFlow loads); this module runs the parsed command.
"""

import sys

import numpy as np

import keras_poison_cli
from keras_poison import datasets
from keras_poison import demo
from keras_poison import experiments
from keras_poison.defences.integrity import DatasetManifest
from keras_poison.defences.integrity import ImageFormatChanged
from keras_poison.experiments import runner


def main(argv=None):
    """Runs `keras-poison` in this process; returns the exit status.

    The same as the command (`keras_poison_cli.main`, which parses and checks
    the arguments before TensorFlow loads); for tests and notebooks.
    """
    return keras_poison_cli.main(argv)


def dispatch(args):
    """Runs the command `args` (parsed by `keras_poison_cli`); returns the exit status."""
    if args.command == "demo":
        run_demo(args)
    elif args.command == "run":
        return run_experiments(args)
    elif args.command == "merge":
        return merge_runs(args)
    elif args.command == "manifest":
        return run_manifest(args)
    return 0


def run_experiments(args):
    """Runs `keras-poison run`; returns the exit status (2 on bad input)."""
    # The launcher has checked the scenario names and `--out`; the runner
    # checks the rest before any training.
    try:
        experiments.run(
            args.scenarios,
            dataset=args.dataset,
            data=args.data,
            model=args.model,
            epochs=args.epochs,
            seeds=runner.parse_seeds(args.seeds),
            out=args.out,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            params=runner.parse_params(args.param),
            plots=not args.no_plots,
            verbose=args.verbose,
        )
    except experiments.ExperimentError as error:
        print(f"keras-poison run: error: {error}", file=sys.stderr)
        return 2
    return 0


def merge_runs(args):
    """Runs `keras-poison merge`; returns the exit status (2 on bad input)."""
    try:
        experiments.merge(args.sources, out=args.out, plots=not args.no_plots)
    except experiments.ExperimentError as error:
        print(f"keras-poison merge: error: {error}", file=sys.stderr)
        return 2
    return 0


def run_manifest(args):
    """Runs `manifest create` or `manifest verify`; returns the exit status."""
    try:
        x, y = _load_npz_split(args.data, args.split)
        if args.action == "create":
            manifest = DatasetManifest.create(x, y)
            manifest.save(args.out)
            print(f"Wrote a manifest of {len(manifest)} examples to {args.out}")
            return 0
        diff = DatasetManifest.load(args.manifest).verify(x, y)
    except ImageFormatChanged as error:
        # Every image changed format (a cast, a reshape): a change, not an error.
        print(f"changed: every image, {error}")
        return 1
    except (OSError, ValueError) as error:
        # Expected failures (missing file, bad format, digest mismatch): a
        # message, not a traceback.
        print(f"keras-poison manifest {args.action}: error: {error}", file=sys.stderr)
        return 2
    print(diff.summary())
    return 0 if diff.clean else 1


def _load_npz_split(path, split):
    """Returns `(x, y)` of one split, or train followed by test for "all"."""
    # With `path=`, `load` reads any .npz whatever the name; "cifar10" only
    # satisfies its name check.
    if split != "all":
        return datasets.load("cifar10", path=path, split=split)
    (x_train, y_train), (x_test, y_test) = datasets.load("cifar10", path=path)
    if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
        raise ValueError(
            f"--split all needs train and test images of one shape and dtype; "
            f"{path!r} has {x_train.shape[1:]} {x_train.dtype} and "
            f"{x_test.shape[1:]} {x_test.dtype}"
        )
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])


def run_demo(args):
    demo.run(
        dataset=args.dataset,
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        verbose=args.verbose,
        plot=not args.no_plot,
    )


if __name__ == "__main__":
    sys.exit(main())
