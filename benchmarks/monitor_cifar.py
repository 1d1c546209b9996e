"""PoisonMonitor against class-oriented poisoning on the CIFAR-10 subset.

The class-oriented threat model (paper §5): a trained model is fine-tuned on
1,000 new images of which half are poisons. Here the clean VGG-like base
model of `class_oriented_paper.py` (seed 0, cached in
`benchmarks/results/cache/`) is fine-tuned for 20 epochs (Adam 1e-4, batch
128) on a stratified 1,000-image subset of the training split that is

* clean (false alarms are counted here),
* poisoned by COEG, `SupplanterPoison(supplanter=airplane, rate=0.5)`, or
* poisoned by COES, `VictimPoison(victim=truck, poison_label=airplane, rate=0.5)`,

both crafted against the base model with ε = 0.03 on [0, 1] images (the
setting where our attacks beat label flipping, docs/benchmarks.md §4).

The clean test split is cut in two stratified halves: the monitor watches one
(`PoisonMonitor(action="log")`, defaults otherwise), the other measures the
attack (CTT, victim CFT, accuracy; `ClassOrientedMetrics`). For every run the
table gives the first alarm epoch, and what `action="stop"` would have left:
the last good epoch's model, measured on the evaluation half.

Usage (from the repository root):

    PYTHONPATH=. python benchmarks/monitor_cifar.py --seeds 0,1,2
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

DEFAULT_OUT = os.path.join("benchmarks", "results", "monitor_cifar.json")
SUPPLANTER, VICTIM, POISON_LABEL = 0, 9, 0
RUNS = ("clean", "coeg", "coes")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=paper.DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--epsilon", type=float, default=0.03)
    parser.add_argument("--subset", type=int, default=1000)
    parser.add_argument("--cache", default=paper.DEFAULT_CACHE)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the .md from the JSON"
    )
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def split_test(y_test):
    """Two stratified halves of the test split: (monitor, evaluation) indices."""
    rng = np.random.default_rng(12345)
    monitor = []
    for k in range(paper.NUM_CLASSES):
        members = np.flatnonzero(y_test == k)
        monitor.append(rng.choice(members, len(members) // 2, replace=False))
    monitor = np.sort(np.concatenate(monitor))
    evaluation = np.setdiff1d(np.arange(len(y_test)), monitor)
    return monitor, evaluation


def poisoned_subset(run, base, x_sub, y_sub, seed, args):
    from keras_poison import SupplanterPoison, VictimPoison

    common = dict(epsilon=args.epsilon, steps=10, value_range=(0.0, 1.0), rate=0.5, seed=seed)
    if run == "clean":
        return x_sub, y_sub
    if run == "coeg":
        attack = SupplanterPoison(base, supplanter=SUPPLANTER, **common)
    else:
        attack = VictimPoison(base, victim=VICTIM, poison_label=POISON_LABEL, **common)
    x_p, y_p, _ = attack.poison(x_sub, y_sub)
    return x_p, y_p


def run_one(run, seed, base, pred_before_eval, data, halves, args):
    from keras_poison import ClassOrientedMetrics, PoisonMonitor

    (x_train, y_train), (x_test, y_test) = data
    monitor_idx, eval_idx = halves
    subset = paper.stratified_subset(y_train, args.subset, seed)
    start = time.perf_counter()
    x_p, y_p = poisoned_subset(run, base, x_train[subset], y_train[subset], seed, args)
    craft_seconds = time.perf_counter() - start
    monitor = PoisonMonitor(
        x_test[monitor_idx], y_test[monitor_idx], num_classes=paper.NUM_CLASSES, action="log"
    )
    measure = ClassOrientedMetrics(
        x_test[eval_idx],
        y_test[eval_idx],
        supplanter=SUPPLANTER,
        predictions_before=pred_before_eval,
        prefix="eval_",
    )
    _, history, seconds = paper.finetune(
        base, x_p, y_p, args.lr, args.epochs, 128, seed, callbacks=[measure, monitor]
    )
    alarm_epochs = sorted({a["epoch"] for a in monitor.alarms})
    first = alarm_epochs[0] if alarm_epochs else None
    # With action="stop", training ends at the first alarm and the weights of
    # the epoch before it come back (before training: the base model).
    kept = None if first is None else first - 1

    def at(key, epoch):
        base_values = {"eval_accuracy": float(np.mean(pred_before_eval == y_test[eval_idx])),
                       "eval_ctt": 0.0, f"eval_cft_{VICTIM}": 0.0}
        return base_values[key] if epoch < 0 else history[key][epoch]

    record = {
        "run": run,
        "seed": seed,
        "alarm_epochs": [e + 1 for e in alarm_epochs],
        "alarms": monitor.alarms,
        "first_alarm_epoch": None if first is None else first + 1,
        "final": {k: history[k][-1] for k in ("eval_accuracy", "eval_ctt", f"eval_cft_{VICTIM}")},
        "if_stopped": None
        if first is None
        else {k: at(k, kept) for k in ("eval_accuracy", "eval_ctt", f"eval_cft_{VICTIM}")},
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
        "craft_seconds": craft_seconds,
        "finetune_seconds": seconds,
    }
    print(
        f"seed {seed} {run}: alarms at epochs {record['alarm_epochs']}, final {record['final']}, "
        f"if stopped {record['if_stopped']}",
        flush=True,
    )
    return record


def pct(v):
    return "—" if v is None else f"{100 * v:+.1f}"


def write_markdown(path, report):
    lines = [
        "# PoisonMonitor on class-oriented fine-tuning (CIFAR-10 subset)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date (UTC): {report['date_utc']}; machine {report['machine'].get('cpu_model')}, "
        f"nproc {report['machine'].get('nproc')}; wall {report['wall_seconds']:.0f} s",
        "",
        "Monitor: `PoisonMonitor(x_half, y_half, num_classes=10)` defaults "
        "(max_accuracy_drop 0.2, max_share_increase 0.1), on 466 test images; "
        "CTT / victim (truck) CFT / accuracy on the other 466, in points.",
        "",
        f"| seed | run | alarm epochs (of {report['config']['epochs']}) | first alarm: class (before → after) | final CTT | final truck CFT | final acc | if stopped: CTT | truck CFT | acc |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in report["runs"]:
        first = rec["first_alarm_epoch"]
        kinds = sorted(
            f"{a['kind'].replace('_', ' ')} {a['class']} ({a['reference']:.2f} → {a['value']:.2f})"
            for a in rec["alarms"]
            if first is not None and a["epoch"] + 1 == first
        )
        stop = rec["if_stopped"] or {}
        stop_acc = "—" if not stop else f"{100 * stop['eval_accuracy']:.1f}"
        lines.append(
            f"| {rec['seed']} | {rec['run']} | {rec['alarm_epochs'] or 'none'} | "
            f"{', '.join(kinds) or '—'} | {pct(rec['final']['eval_ctt'])} | "
            f"{pct(rec['final'][f'eval_cft_{VICTIM}'])} | {100 * rec['final']['eval_accuracy']:.1f} | "
            f"{pct(stop.get('eval_ctt'))} | {pct(stop.get(f'eval_cft_{VICTIM}'))} | "
            f"{stop_acc} |"
        )
    clean = [r for r in report["runs"] if r["run"] == "clean"]
    attacked = [r for r in report["runs"] if r["run"] != "clean"]
    false_epochs = sum(len(r["alarm_epochs"]) for r in clean)
    lines += [
        "",
        f"False alarms (clean runs): {false_epochs} alarm epochs in "
        f"{len(clean) * report['config']['epochs']} epochs; "
        f"{sum(bool(r['alarm_epochs']) for r in clean)} of {len(clean)} clean runs alarmed. "
        f"Attacked runs caught: {sum(bool(r['alarm_epochs']) for r in attacked)} of {len(attacked)}.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        with open(args.out) as f:
            write_markdown(os.path.splitext(args.out)[0] + ".md", json.load(f))
        return
    started = time.perf_counter()
    data = paper.load_dataset("cifar10", args)
    settings = paper.SETTINGS["cifar10"]
    base, pred_before, _, _ = paper.base_model(
        "cifar10", settings, 0, settings["base_epochs"], data, args.cache
    )
    halves = split_test(data[1][1])
    report = {
        "command": " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": vars(args),
        "runs": [],
    }
    for seed in args.seeds:
        for run in RUNS:
            report["runs"].append(
                run_one(run, seed, base, pred_before[halves[1]], data, halves, args)
            )
    report["wall_seconds"] = time.perf_counter() - started
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, default=float)
    write_markdown(os.path.splitext(args.out)[0] + ".md", report)


if __name__ == "__main__":
    main()
