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
"""

import argparse
import os
import sys
import time

from keras_poison.demo import DATASET_MODELS


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-poison",
        description="Data-poisoning attacks and defences for Keras image classifiers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="attacks, detectors and defences on packaged data: damage, detection, recovery",
        description=(
            "Trains a small model clean and under three attacks (random flips, targeted "
            "flips, COEG crafted poisons), scores a detector against each attack's "
            "ground truth, and measures what a defence wins back. Prints one table; "
            "writes results.json and demo.png to --out."
        ),
    )
    demo.add_argument("--dataset", choices=sorted(DATASET_MODELS), default="mnist5k")
    demo.add_argument("--data", default=None, help="a local .npz (needed for cifar10)")
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="keras-poison-demo", help="directory for results.json and demo.png")
    demo.add_argument("--no-plot", action="store_true", help="do not write demo.png")
    demo.add_argument(
        "--verbose", type=int, default=1, choices=[0, 1, 2],
        help="0: the table only; 1: a progress bar per phase (default); 2: also Keras' epoch lines",
    )
    add_run_parser(commands)
    add_merge_parser(commands)
    add_manifest_parser(commands)
    return parser


def add_run_parser(commands):
    run = commands.add_parser(
        "run",
        help="run scenarios x seeds; write results.json, table.md and plots (resumable)",
        description=(
            "Runs each SCENARIO once per seed and writes results.json (after every "
            "finished cell, so a run can be stopped and started again: finished cells "
            "are skipped), table.md and PNG plots into --out. Bad input exits with "
            "status 2 before any training."
        ),
    )
    run.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="scenario names (see --list), or all"
    )
    run.add_argument("--list", action="store_true", help="list the scenarios and exit")
    run.add_argument(
        "--dataset",
        default=None,
        help="cifar10, mnist, digits, mnist5k or imagefolder (default: imagefolder when "
        "--data is an image folder, else digits)",
    )
    run.add_argument(
        "--data",
        default=None,
        help="a local .npz (or a folder holding one; cifar10/mnist offline), or an image "
        "folder DIR/{train,test}/<class>/<image> of one image size",
    )
    run.add_argument(
        "--model",
        default=None,
        help="vgg_like, lenet5, vgg9 or resnet50 (default: lenet5 for mnist/mnist5k, "
        "resnet50 for an image folder, else vgg_like); resnet50 reports top-5 accuracy",
    )
    run.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    run.add_argument(
        "--seeds",
        default="1",
        help="K for seeds 0..K-1, or a comma-separated list of seeds: 1,2 (one seed: 2,) "
        "(default 1)",
    )
    run.add_argument("--out", default=None, help="output folder (created if needed)")
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--learning-rate", type=float, default=1e-3)
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario parameter, e.g. epsilon=8/255 or alphas=0.1,0.5 "
        "(repeatable; --list shows them)",
    )
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    run.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="Keras fit verbosity")


def add_merge_parser(commands):
    merge = commands.add_parser(
        "merge",
        help="merge runs made in parallel (split by seed or scenario) into one table",
        description=(
            "Merges the results.json of several `keras-poison run` folders of the same "
            "settings into --out (with any results.json already there) and writes "
            "table.md and the plots. Exit status 2 on bad input."
        ),
    )
    merge.add_argument("sources", nargs="+", metavar="RUN_DIR", help="folders written by run")
    merge.add_argument("--out", required=True, help="output folder (created if needed)")
    merge.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def add_manifest_parser(commands):
    manifest = commands.add_parser(
        "manifest",
        help="fingerprint a data set, or check it against its fingerprints",
    )
    actions = manifest.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="write a manifest of a .npz data set")
    verify = actions.add_parser(
        "verify",
        help="check a .npz data set against a manifest (exit 0 clean, 1 changed, 2 error)",
    )
    for action in (create, verify):
        action.add_argument(
            "--data", required=True, help="a .npz with x_train, y_train[, x_test, y_test]"
        )
        action.add_argument(
            "--split",
            choices=["train", "test", "all"],
            default="train",
            help="which arrays to fingerprint; all = train then test (default train)",
        )
    create.add_argument("--out", required=True, help="the manifest to write (.json or .npz)")
    verify.add_argument("--manifest", required=True, help="a manifest written by create")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        if args.epochs < 1:
            raise SystemExit(f"--epochs must be >= 1 (received {args.epochs})")
        if args.dataset == "cifar10" and args.data is None:
            raise SystemExit("--dataset cifar10 needs --data PATH to a local .npz (no download here)")
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
    # Imported here, like the other commands, so argument errors answer before
    # the experiment modules load.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_poison import experiments
    from keras_poison.experiments import runner

    if args.list:
        width = max(len(name) for name, _ in experiments.list_scenarios())
        for name, description in experiments.list_scenarios():
            print(f"{name:<{width}}  {description}")
        print("\nParameters (--param KEY=VALUE) and their defaults:")
        for name, scenario in experiments.SCENARIOS.items():
            shown = ", ".join(f"{k}={_shown(v)}" for k, v in scenario.params.items()) or "none"
            print(f"  {name}: {shown}")
        return 0
    try:
        if not args.scenarios:
            raise experiments.ExperimentError(
                "Expected at least one SCENARIO (see --list, or 'all'). Received: none"
            )
        if args.out is None:
            raise experiments.ExperimentError(
                "Expected `--out DIR`, the folder for results.json, table.md and the plots. "
                "Received: none"
            )
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_poison import experiments

    try:
        experiments.merge(args.sources, out=args.out, plots=not args.no_plots)
    except experiments.ExperimentError as error:
        print(f"keras-poison merge: error: {error}", file=sys.stderr)
        return 2
    return 0


def _shown(value):
    """A parameter's default as one would type it after `--param KEY=`."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(v) for v in value)
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def run_manifest(args):
    """Runs `manifest create` or `manifest verify`; returns the exit status."""
    # Imported here so `keras-poison --help` answers without loading TensorFlow
    # (which the package import still loads; keep its start-up logs quiet).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_poison.defences.integrity import DatasetManifest

    try:
        x, y = _load_npz_split(args.data, args.split)
        if args.action == "create":
            manifest = DatasetManifest.create(x, y)
            manifest.save(args.out)
            print(f"Wrote a manifest of {len(manifest)} examples to {args.out}")
            return 0
        diff = DatasetManifest.load(args.manifest).verify(x, y)
    except (OSError, ValueError) as error:
        # Expected failures (missing file, bad format, digest mismatch): a
        # message, not a traceback.
        print(f"keras-poison manifest {args.action}: error: {error}", file=sys.stderr)
        return 2
    print(diff.summary())
    return 0 if diff.clean else 1


def _load_npz_split(path, split):
    """Returns `(x, y)` of one split, or train followed by test for "all"."""
    import numpy as np

    from keras_poison import datasets

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--data {path!r} is not a file")
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
    # Imported here so `keras-poison --help` answers without loading TensorFlow.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_poison import demo

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
