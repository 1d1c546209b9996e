"""PoisonMonitor false alarms on clean runs trained from scratch (issue 19 §3).

A model is trained from scratch on clean data while one
`PoisonMonitor(action="log", start_from_epoch=0)` records, every epoch, the
per-class accuracy and prediction share on a trusted half of the test split.
The recorded measurements are then replayed through fresh monitors (the
library's own alarm logic, no model needed in "log" mode) for each
`start_from_epoch` value and for the default, so one training run per seed
answers every setting. A false alarm is any alarm on these clean runs.

Usage (from the repository root):

    PYTHONPATH=benchmarks python benchmarks/monitor_from_scratch.py --dataset digits --seeds 0,1,2
    PYTHONPATH=benchmarks python benchmarks/monitor_from_scratch.py --dataset cifar10 \
        --data ../shared/data/cifar10_subset.npz --seeds 0,1,2 --epochs 30
    # after a change to PoisonMonitor, without training again:
    PYTHONPATH=benchmarks python benchmarks/monitor_from_scratch.py \
        --replay benchmarks/results/monitor_from_scratch_cifar10.json
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time

import numpy as np

from _machine import machine_info

MODELS = {"digits": "vgg_like", "mnist5k": "lenet5", "cifar10": "vgg_like"}
SETTINGS = ("default", 0, 1, 2, 3, 5, 8)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(MODELS), default="digits")
    parser.add_argument("--data", default=None)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--replay",
        default=None,
        help="recompute the alarms of a results file's recorded measurements with "
        "the library as it is now (no training), and rewrite that file",
    )
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.out = args.out or os.path.join(
        "benchmarks", "results", f"monitor_from_scratch_{args.dataset}.json"
    )
    return args


def trusted_half(y_test, num_classes):
    rng = np.random.default_rng(12345)
    picked = [
        rng.choice(np.flatnonzero(y_test == k), np.sum(y_test == k) // 2, replace=False)
        for k in range(num_classes)
    ]
    return np.sort(np.concatenate(picked))


def replay(measurements, x, y, num_classes, start_from_epoch):
    """The alarms a monitor with `start_from_epoch` raises on `measurements`."""
    from keras_poison import PoisonMonitor

    kwargs = {} if start_from_epoch == "default" else {"start_from_epoch": start_from_epoch}
    monitor = PoisonMonitor(x, y, num_classes=num_classes, action="log", **kwargs)
    feed = iter(measurements)
    monitor.measure = lambda: next(feed)
    monitor.on_train_begin()
    for epoch in range(len(measurements) - 1):
        monitor.on_epoch_end(epoch, {})
    return monitor.alarms


def alarms_by_setting(measurements, x, y, num_classes):
    return {
        str(s): [
            {**a, "epoch": a["epoch"] + 1}
            for a in replay(measurements, x, y, num_classes, s)
        ]
        for s in SETTINGS
    }


def summarize(runs):
    return {
        str(s): {
            "runs_with_a_false_alarm": sum(bool(r["alarms"][str(s)]) for r in runs),
            "alarm_epochs": [sorted({a["epoch"] for a in r["alarms"][str(s)]}) for r in runs],
        }
        for s in SETTINGS
    }


def replay_file(path):
    """Recomputes every setting's alarms from the recorded measurements."""
    with open(path) as f:
        result = json.load(f)
    first = result["runs"][0]
    num_classes = len(first["class_accuracy"][0])
    for run in result["runs"]:
        measurements = [
            {"accuracy": a, "class_accuracy": np.array(c), "prediction_share": np.array(p)}
            for a, c, p in zip(run["trusted_accuracy"], run["class_accuracy"], run["prediction_share"])
        ]
        # The trusted labels only enter through their class counts here.
        counts = result["trusted_class_counts"]
        y = np.repeat(np.arange(num_classes), counts)
        x = np.zeros((len(y), 1), "float32")
        run["alarms"] = alarms_by_setting(measurements, x, y, num_classes)
    result["summary"] = summarize(result["runs"])
    result["replayed"] = datetime.date.today().isoformat()
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=float)
    for s in SETTINGS:
        print(f"start_from_epoch={s}: {result['summary'][str(s)]}")


def main(argv=None):
    args = parse_args(argv)
    if args.replay:
        return replay_file(args.replay)
    import keras
    import tensorflow as tf

    from keras_poison import PoisonMonitor, datasets, models

    (x_train, y_train), (x_test, y_test) = datasets.load(args.dataset, path=args.data)
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    num_classes = int(y_train.max() + 1)
    trusted = trusted_half(y_test, num_classes)
    x_t, y_t = x_test[trusted], y_test[trusted]
    build = getattr(models, MODELS[args.dataset])
    runs = []
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        model = build(input_shape=x_train.shape[1:], num_classes=num_classes, seed=seed)
        recorder = PoisonMonitor(x_t, y_t, num_classes=num_classes, action="log", start_from_epoch=0)
        ds = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=seed)
            .batch(args.batch_size)
        )
        start = time.perf_counter()
        model.fit(ds, epochs=args.epochs, verbose=0, callbacks=[recorder])
        seconds = time.perf_counter() - start
        measurements = recorder.history
        alarms = alarms_by_setting(measurements, x_t, y_t, num_classes)
        runs.append(
            {
                "seed": seed,
                "seconds": seconds,
                "trusted_accuracy": [m["accuracy"] for m in measurements],
                # Per epoch (index 0: before training), so other rules can be replayed.
                "class_accuracy": [m["class_accuracy"].tolist() for m in measurements],
                "prediction_share": [m["prediction_share"].tolist() for m in measurements],
                "alarms": alarms,
            }
        )
        print(
            f"seed {seed}: {seconds:.0f}s, trusted acc "
            f"{measurements[0]['accuracy']:.2f} -> {measurements[-1]['accuracy']:.2f}; "
            + ", ".join(f"start_from_epoch={s}: {len(alarms[str(s)])} alarms" for s in SETTINGS),
            flush=True,
        )
    summary = summarize(runs)
    result = {
        "command": "PYTHONPATH=benchmarks python benchmarks/monitor_from_scratch.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "dataset": args.dataset,
        "model": MODELS[args.dataset],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "trusted_examples": int(len(trusted)),
        "trusted_class_counts": np.bincount(y_t, minlength=num_classes).tolist(),
        "summary": summary,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=float)
    for s in SETTINGS:
        print(f"start_from_epoch={s}: {summary[str(s)]}")


if __name__ == "__main__":
    main()
