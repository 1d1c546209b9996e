"""PoisonMonitor against a class-oriented attack paced to stay under it (issue 20).

The class-oriented fine-tuning threat model (paper §5), as in
`monitor_cifar.py`: a trained base model (`class_oriented_paper.py`'s, seed 0)
is fine-tuned for 20 epochs (Adam 1e-4, batch 128) on a stratified 1,000-image
subset of the training split of which `--rate` are poisons, crafted against
the base model. The clean test split is cut into three stratified thirds:
the defender's `PoisonMonitor` watches one (defaults: max_accuracy_drop 0.2,
max_share_increase 0.1, `action="log"`), the attacker's own shadow monitor
another, and the third measures the attack (CTT, victim CFT, accuracy).

Runs per seed: `clean`; `coeg` and `coes` with every poison in from the
first epoch; `coeg_paced` and `coes_paced`, the same poisons released by
`PacedPoisons(attack, x_attacker, y_attacker, margin, step)`. For each run:
the defender's first alarm epoch, the attack's figures at the end, and the
most it reached before the first alarm (what an attacker gets from a
defender who stops at the alarm).

Usage (from the repository root):

    PYTHONPATH=. python benchmarks/paced_monitor.py --dataset mnist5k --seeds 0,1,2
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time

import numpy as np

import class_oriented_paper as paper  # benchmarks/ is on sys.path
from _machine import machine_info

RUNS = ("clean", "coeg", "coeg_paced", "coes", "coes_paced")
EPSILON = {"mnist5k": 0.3, "cifar10": 0.03}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k", choices=sorted(EPSILON))
    parser.add_argument("--data", default=paper.DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--subset", type=int, default=1000)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--cache", default=paper.DEFAULT_CACHE)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.epsilon = EPSILON[args.dataset]
    args.out = args.out or os.path.join("benchmarks", "results", f"paced_monitor_{args.dataset}.json")
    return args


def split_test(y_test):
    """Three stratified thirds of the test split: defender, attacker, evaluation."""
    rng = np.random.default_rng(12345)
    parts = [[], [], []]
    for k in range(paper.NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(y_test == k))
        for part, chunk in zip(parts, np.array_split(members, 3)):
            part.append(chunk)
    return [np.sort(np.concatenate(part)) for part in parts]


def run_one(run, seed, base, data, thirds, settings, args):
    import keras
    import tensorflow as tf

    import keras_poison as kp

    (x_train, y_train), (x_test, y_test) = data
    defender, attacker, evaluation = thirds
    supplanter, victim = settings["set_supplanter"], settings["victim"]
    subset = paper.stratified_subset(y_train, args.subset, seed)
    x_sub, y_sub = x_train[subset], y_train[subset]
    pred_before = np.argmax(base.predict(x_test[evaluation], verbose=0), axis=-1)
    callbacks = [
        kp.ClassOrientedMetrics(
            x_test[evaluation], y_test[evaluation], supplanter=supplanter,
            predictions_before=pred_before, prefix="eval_",
        ),
        kp.PoisonMonitor(x_test[defender], y_test[defender], num_classes=paper.NUM_CLASSES,
                         action="log"),
    ]
    monitor = callbacks[1]
    train = tf.data.Dataset.from_tensor_slices((x_sub, y_sub))
    start = time.perf_counter()
    if run != "clean":
        common = dict(epsilon=args.epsilon, steps=10, value_range=(0.0, 1.0), rate=args.rate,
                      seed=seed)
        if run.startswith("coeg"):
            attack = kp.SupplanterPoison(base, supplanter=supplanter, **common)
        else:
            attack = kp.VictimPoison(base, victim=victim, poison_label=settings["poison_label"],
                                     **common)
        train = train.apply(attack)
        if run.endswith("_paced"):
            callbacks.append(kp.PacedPoisons(
                attack, x_test[attacker], y_test[attacker], num_classes=paper.NUM_CLASSES,
                margin=args.margin, step=args.step,
            ))
    craft_seconds = time.perf_counter() - start
    keras.utils.set_random_seed(seed)
    model = keras.models.clone_model(base)
    model.set_weights(base.get_weights())
    model.compile(optimizer=keras.optimizers.Adam(args.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(train.shuffle(len(y_sub), seed=seed).batch(128), epochs=args.epochs,
                        verbose=0, callbacks=callbacks).history
    seconds = time.perf_counter() - start
    alarm_epochs = sorted({a["epoch"] for a in monitor.alarms})
    first = alarm_epochs[0] if alarm_epochs else None
    before_alarm = slice(0, args.epochs if first is None else first)
    keys = ("eval_accuracy", "eval_ctt", f"eval_cft_{victim}")
    record = {
        "run": run,
        "seed": seed,
        "alarm_epochs": [e + 1 for e in alarm_epochs],
        "first_alarm_epoch": None if first is None else first + 1,
        "alarms": monitor.alarms,
        "final": {k: float(history[k][-1]) for k in keys},
        # The most the attack reached on the epochs the defender did not flag.
        "best_before_alarm": {
            "ctt": max([0.0] + [float(v) for v in history["eval_ctt"][before_alarm]]),
            "victim_cft": max([0.0] + [float(v) for v in history[f"eval_cft_{victim}"][before_alarm]]),
        },
        "released": [float(v) for v in history.get("paced_released", [])],
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
        "craft_seconds": craft_seconds,
        "finetune_seconds": seconds,
    }
    print(
        f"seed {seed} {run}: alarms {record['alarm_epochs'] or 'none'}; final CTT "
        f"{record['final']['eval_ctt']:+.3f}, victim CFT {record['final'][keys[2]]:+.3f}; "
        f"before the alarm CTT {record['best_before_alarm']['ctt']:+.3f}, CFT "
        f"{record['best_before_alarm']['victim_cft']:+.3f}"
        + (f"; released {[round(r, 2) for r in record['released']]}" if record["released"] else ""),
        flush=True,
    )
    return record


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def write_markdown(path, report):
    lines = [
        f"# PoisonMonitor against paced class-oriented poisons ({report['config']['dataset']})",
        "",
        f"Command: `{report['command']}`  ",
        f"Date (UTC): {report['date_utc']}; machine {report['machine'].get('cpu_model')}, "
        f"nproc {report['machine'].get('nproc')}; wall {report['wall_seconds']:.0f} s",
        "",
        "Figures in points (CTT of the supplanter, CFT of the victim), mean ± population "
        "std over seeds; 'before the alarm' is the most the attack reached on the epochs "
        "before the defender's first alarm (all epochs when it never fired).",
        "",
        "| run | runs alarmed | first alarm epoch | final CTT | final victim CFT | CTT before the alarm | victim CFT before the alarm |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in RUNS:
        mine = [r for r in report["runs"] if r["run"] == run]
        if not mine:
            continue
        alarmed = [r for r in mine if r["first_alarm_epoch"] is not None]
        lines.append(
            f"| {run} | {len(alarmed)} of {len(mine)} "
            f"| {', '.join(str(r['first_alarm_epoch']) for r in alarmed) or '—'} "
            f"| {summary([100 * r['final']['eval_ctt'] for r in mine])} "
            f"| {summary([100 * r['final'][next(k for k in r['final'] if k.startswith('eval_cft'))] for r in mine])} "
            f"| {summary([100 * r['best_before_alarm']['ctt'] for r in mine])} "
            f"| {summary([100 * r['best_before_alarm']['victim_cft'] for r in mine])} |"
        )
    lines += ["", "Released fraction of the poisons per epoch (paced runs):", ""]
    for r in report["runs"]:
        if r["released"]:
            lines.append(f"- seed {r['seed']} {r['run']}: {[round(v, 2) for v in r['released']]}")
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    data = paper.load_dataset(args.dataset, args)
    settings = paper.SETTINGS[args.dataset]
    base, _, _, _ = paper.base_model(
        args.dataset, settings, 0, settings["base_epochs"], data, args.cache
    )
    thirds = split_test(data[1][1])
    report = {
        "command": " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {k: v for k, v in vars(args).items()},
        "runs": [],
    }
    for seed in args.seeds:
        for run in RUNS:
            report["runs"].append(run_one(run, seed, base, data, thirds, settings, args))
            report["wall_seconds"] = time.perf_counter() - started
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                json.dump(report, f, indent=1, default=float)
            write_markdown(os.path.splitext(args.out)[0] + ".md", report)


if __name__ == "__main__":
    main()
