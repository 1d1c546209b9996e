"""Ensembles and weight averaging against poisoning (issue 17, §2 and §5).

Defences (`--defences`, comma-separated):

* `single`: one model (the undefended baseline).
* `averaged`: one model trained with `averaged_weights()` (Keras' EMA of
  the weights, `SwapEMAWeights`): the paper's "averaged stochastic gradient
  classifier".
* `partition<k>` (e.g. `partition5`): `PartitionEnsemble(k)`, Deep Partition
  Aggregation, with its certified accuracy against the number of poisons.
* `bagging<k>`: `BaggingEnsemble(k)`, bootstrap samples of the full size.

Protocols (`--protocol`):

* `flip` (default): every defence is trained from scratch on the clean
  training split and on the split with 20% of its labels flipped
  (`RandomFlip(rate=0.2, seed=--seed)`); the clean test split is evaluated:
  accuracy, per-class CFT (the drop of each class's accuracy from the
  defence's own clean model), and for `partition<k>` the certified-accuracy
  curve of both models. `--flips` chooses the flips: `random` (the
  default), or flips placed to evade label-noise detectors (issue 20):
  `least_confident` (`EvasiveFlip.least_confident` on 3-fold out-of-sample
  probabilities of the `single` model on the clean split) or `neighbours`
  (`EvasiveFlip.neighbour_disagreement` on that model's features, k = 50).
* `finetune`: the class-oriented paper's protocol (§5.1). Every defence is
  trained on the clean training split (the base); poisons are crafted
  against the base `single` model (the attacker sees one model; for the
  other defences they transfer); a copy of each base is fine-tuned with
  Adam(`--ft-lr`) on a stratified subset of `--set-size` training images in
  which a fraction is poisoned: `coeg` = `SupplanterPoison(rate=--alpha)`
  (supplanter `--supplanter`), `fl` = the same seeds relabelled to the
  supplanter, `coes` = `VictimPoison(victim=--victim,
  poison_label=--supplanter, rate=0.5)`, `clean` = the subset unpoisoned.
  Reported: accuracy, CTT of the supplanter and CFT per class against the
  base's own predictions, certified accuracy for `partition<k>`.

Member epochs: `single`, `averaged` and `bagging` members train `--epochs`
epochs; `partition<k>` members train `--member-epochs` epochs on their
part (a part is 1/k of the data, so they take fewer steps each; DPA trades
accuracy for certificates this way).

Usage (from the repository root):

    python benchmarks/ensembles.py --dataset mnist5k --model lenet5 \\
        --defences single,averaged,partition5,partition10,partition25,bagging5
    python benchmarks/ensembles.py --dataset cifar10 --model vgg_like --epochs 30 \\
        --member-epochs 60 --out benchmarks/results/ensembles_cifar.json
    python benchmarks/ensembles.py --protocol finetune --dataset mnist5k \\
        --out benchmarks/results/ensembles_finetune_mnist5k.json
    python benchmarks/ensembles.py --report-only      # redraw the plot and table

Writes `--out` (JSON, rewritten after every cell; cells already there are
skipped, so a run can be resumed), a markdown table next to it and the
certified-accuracy plot `--plot` (default `docs/img/ensembles_certified_<dataset>.png`).
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time

import numpy as np

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10_subset.npz")
)
NUM_CLASSES = 10
# --flips: the scenario name of the flipped cells in the JSON, and its label.
FLIP_SCENARIOS = {
    "random": ("random_flip", "random flips"),
    "least_confident": ("evasive_confidence", "evasive flips: least confident → runner-up"),
    "neighbours": ("evasive_knn", "evasive flips: neighbours' plurality"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=("flip", "finetune"), default="flip")
    parser.add_argument("--dataset", choices=("mnist5k", "cifar10", "digits"), default="mnist5k")
    parser.add_argument("--data", default=DEFAULT_DATA, help="the CIFAR subset .npz")
    parser.add_argument("--model", choices=("lenet5", "vgg_like", "mlp"), default="lenet5")
    parser.add_argument(
        "--defences", default="single,averaged,partition5,partition10,partition25,bagging5"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--member-epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema-momentum", type=float, default=0.99)
    parser.add_argument("--rate", type=float, default=0.2, help="flip protocol: flip rate")
    parser.add_argument("--flips", choices=tuple(FLIP_SCENARIOS), default="random",
                        help="flip protocol: random flips or flips placed to evade detectors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=None, help="use only the first N")
    parser.add_argument("--test-size", type=int, default=None, help="use only the first N")
    # finetune protocol
    parser.add_argument("--attacks", default="clean,fl,coeg,coes")
    parser.add_argument("--set-size", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--supplanter", type=int, default=0)
    parser.add_argument("--victim", type=int, default=9)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--ft-lr", type=float, default=1e-4)
    parser.add_argument("--ft-epochs", type=int, default=20)
    parser.add_argument("--ft-batch-size", type=int, default=128)
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=None)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    stem = f"ensembles_{args.dataset}" if args.protocol == "flip" else (
        f"ensembles_finetune_{args.dataset}"
    )
    if args.protocol == "flip" and args.flips != "random":
        stem += f"_{args.flips}"
    args.out = args.out or os.path.join("benchmarks", "results", stem + ".json")
    args.plot = args.plot or os.path.join("docs", "img", stem.replace("ensembles", "ensembles_certified") + ".png")
    args.defences = [d for d in args.defences.split(",") if d]
    args.attacks = [a for a in args.attacks.split(",") if a]
    for name in args.defences:
        parse_defence(name)
    return args


def parse_defence(name):
    """`(kind, k)` of a defence name."""
    for kind in ("partition", "bagging"):
        if name.startswith(kind) and name[len(kind):].isdigit():
            return kind, int(name[len(kind):])
    if name in ("single", "averaged"):
        return name, None
    raise SystemExit(f"unknown defence {name!r}: single, averaged, partition<k>, bagging<k>")


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# ----------------------------------------------------------------------
# Data and models.


def load_data(args):
    from keras_poison import datasets

    if args.dataset == "cifar10":
        (x, y), (x_test, y_test) = datasets.load("cifar10", path=args.data)
    else:
        (x, y), (x_test, y_test) = datasets.load(args.dataset)
    x = x[: args.train_size].astype("float32") / 255.0
    x_test = x_test[: args.test_size].astype("float32") / 255.0
    return x, y[: args.train_size].astype("int64"), x_test, y_test[: args.test_size].astype("int64")


def builder(args, input_shape, lr):
    """`build_model(index)`: the seeded, compiled model of member `index`."""
    import keras

    from keras_poison import models

    def build(index=0):
        seed = args.seed * 1000 + index
        if args.model == "lenet5":
            return models.lenet5(input_shape, NUM_CLASSES, learning_rate=lr, seed=seed)
        if args.model == "vgg_like":
            return models.vgg_like(input_shape, NUM_CLASSES, learning_rate=lr, seed=seed)
        init = keras.initializers.GlorotUniform
        model = keras.Sequential(
            [
                keras.Input(input_shape),
                keras.layers.Flatten(),
                keras.layers.Dense(256, activation="relu", kernel_initializer=init(seed)),
                keras.layers.Dense(
                    NUM_CLASSES, activation="softmax", kernel_initializer=init(seed + 7919)
                ),
            ]
        )
        model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    return build


def train_defence(name, args, x, y, build):
    """A trained model (or ensemble) of defence `name`; returns it and seconds."""
    import keras

    from keras_poison import BaggingEnsemble
    from keras_poison import PartitionEnsemble
    from keras_poison import averaged_weights

    kind, k = parse_defence(name)
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    if kind in ("single", "averaged"):
        model = build(0)
        callbacks = []
        if kind == "averaged":
            recipe = averaged_weights(model.optimizer, ema_momentum=args.ema_momentum)
            model.compile(recipe.optimizer, model.loss, metrics=["accuracy"])
            callbacks = recipe.callbacks
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0,
                  callbacks=callbacks)
    else:
        cls = PartitionEnsemble if kind == "partition" else BaggingEnsemble
        model = cls(build, k=k, num_classes=NUM_CLASSES, seed=args.seed)
        epochs = args.member_epochs if kind == "partition" else args.epochs
        model.fit(x, y, epochs=epochs, batch_size=args.batch_size, verbose=1)
    return model, time.perf_counter() - start


def predict_classes(model, x):
    return np.argmax(model.predict(x, batch_size=512, verbose=0), axis=1)


def measure(name, model, x_test, y_test):
    """Accuracy, predictions and (partition) certificates of a trained defence."""
    from keras_poison import certified_accuracy

    kind, _ = parse_defence(name)
    if kind == "partition":
        predictions, radius = model.certify(x_test, batch_size=512)
        curve = certified_accuracy(y_test, predictions, radius)
        extra = {
            "certified_accuracy": [float(v) for v in curve],
            "median_radius": float(np.median(radius)),
        }
    else:
        predictions, extra = predict_classes(model, x_test), {}
    return predictions, dict(accuracy=float(np.mean(predictions == y_test)), **extra)


# ----------------------------------------------------------------------
# Protocols.


class Report:
    def __init__(self, path, data):
        self.path, self.data = path, data

    def save(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


def run_flip(report, args):
    from keras_poison import RandomFlip
    from keras_poison import cft_rate

    x, y, x_test, y_test = load_data(args)
    build = builder(args, x.shape[1:], args.lr)
    flipped_scenario = FLIP_SCENARIOS[args.flips][0]
    _, y_flipped, mask = flip_attack(args, x, y, build).poison(x, y)
    report.data["data"] = {"train": int(len(x)), "test": int(len(x_test)),
                           "flipped": int(mask.sum()), "flips": args.flips}
    cells = report.data.setdefault("cells", {})
    for name in args.defences:
        predictions = {}
        for scenario, labels in (("clean", y), (flipped_scenario, y_flipped)):
            key = f"{scenario}|{name}"
            if key in cells:
                predictions[scenario] = np.array(cells[key]["predictions"])
                continue
            log(f"{key}: training")
            model, seconds = train_defence(name, args, x, labels, build)
            pred, cell = measure(name, model, x_test, y_test)
            cell.update(seconds=seconds, predictions=pred.tolist())
            predictions[scenario] = pred
            if scenario == flipped_scenario:
                cft = cft_rate(y_test, predictions["clean"], pred, num_classes=NUM_CLASSES)
                cell.update(cft=[float(v) for v in cft], cft_max=float(np.nanmax(cft)))
            cells[key] = cell
            report.save()
            log(f"{key}: accuracy {cell['accuracy']:.4f} ({seconds:.0f} s)"
                + (f", certified at 1 poison {cell['certified_accuracy'][1]:.4f}"
                   if "certified_accuracy" in cell else ""))


def flip_attack(args, x, y, build):
    """The flip attack of `--flips`, fitted where it needs a surrogate."""
    import keras

    from keras_poison import EvasiveFlip
    from keras_poison import LabelIssueDetector
    from keras_poison import RandomFlip
    from keras_poison.defences.detectors import extract_features

    if args.flips == "random":
        return RandomFlip(rate=args.rate, num_classes=NUM_CLASSES, seed=args.seed)
    # The attacker's surrogate: the undefended model on the clean split.
    keras.utils.set_random_seed(args.seed)
    if args.flips == "neighbours":
        model = build(0)
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        features = extract_features(model, x)
        keras.backend.clear_session(free_memory=True)
        return EvasiveFlip.neighbour_disagreement(
            features, y, args.rate, k=50, num_classes=NUM_CLASSES, seed=args.seed)
    probabilities = LabelIssueDetector(
        build_model=lambda: build(0), num_folds=3, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed,
    ).out_of_sample_probabilities(x, y)
    return EvasiveFlip.least_confident(probabilities, y, args.rate, seed=args.seed)


def stratified_subset(y, size, seed):
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size // NUM_CLASSES, replace=False)
              for c in range(NUM_CLASSES)]
    return np.sort(np.concatenate(chosen))


def copy_for_finetuning(name, base, args):
    """A copy of a trained defence, recompiled with Adam(--ft-lr)."""
    import keras

    from keras_poison import averaged_weights

    kind, _ = parse_defence(name)

    def recompile(model, averaged=False):
        optimizer = keras.optimizers.Adam(args.ft_lr)
        if averaged:
            optimizer = averaged_weights(optimizer, ema_momentum=args.ema_momentum).optimizer
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])

    if kind in ("single", "averaged"):
        model = keras.models.clone_model(base)
        model.set_weights(base.get_weights())
        recompile(model, averaged=kind == "averaged")
        return model
    copy = type(base).from_config(base.get_config())
    for member, source in zip(copy.members, base.members):
        member.set_weights(source.get_weights())
        recompile(member)
    return copy


def run_finetune(report, args):
    from keras_poison import SupplanterPoison
    from keras_poison import VictimPoison
    from keras_poison import averaged_weights
    from keras_poison import cft_rate
    from keras_poison import ctt_rate
    from keras_poison import relabel_seeds

    import keras

    x, y, x_test, y_test = load_data(args)
    build = builder(args, x.shape[1:], args.lr)
    subset = stratified_subset(y, args.set_size, args.seed)
    x_sub, y_sub = x[subset], y[subset]
    report.data["data"] = {"train": int(len(x)), "test": int(len(x_test)),
                           "finetune_set": int(len(subset))}
    bases, base_predictions = {}, {}
    for name in dict.fromkeys(["single"] + args.defences):
        log(f"base {name}: training on the clean training split")
        bases[name], seconds = train_defence(name, args, x, y, build)
        base_predictions[name], cell = measure(name, bases[name], x_test, y_test)
        report.data.setdefault("bases", {})[name] = dict(cell, seconds=seconds)
        log(f"base {name}: accuracy {cell['accuracy']:.4f} ({seconds:.0f} s)")
        report.save()

    sets = {"clean": (x_sub, y_sub)}
    common = dict(epsilon=args.epsilon, steps=args.steps, value_range=(0.0, 1.0), seed=args.seed)
    if "coeg" in args.attacks or "fl" in args.attacks:
        attack = SupplanterPoison(bases["single"], supplanter=args.supplanter,
                                  rate=args.alpha, **common)
        sets["coeg"] = attack.poison(x_sub, y_sub)[:2]
        flip = relabel_seeds(x_sub, y_sub, attack.poisons.source_indices, args.supplanter)
        sets["fl"] = flip.poison(x_sub, y_sub)[:2]
    if "coes" in args.attacks:
        attack = VictimPoison(bases["single"], victim=args.victim,
                              poison_label=args.supplanter, rate=0.5, **common)
        sets["coes"] = attack.poison(x_sub, y_sub)[:2]
    cells = report.data.setdefault("cells", {})
    for attack_name in args.attacks:
        x_ft, y_ft = sets[attack_name]
        for name in args.defences:
            key = f"{attack_name}|{name}"
            if key in cells:
                continue
            kind, _ = parse_defence(name)
            model = copy_for_finetuning(name, bases[name], args)
            keras.utils.set_random_seed(args.seed)
            start = time.perf_counter()
            if kind in ("single", "averaged"):
                callbacks = []
                if kind == "averaged":
                    callbacks = averaged_weights(ema_momentum=args.ema_momentum).callbacks
                model.fit(x_ft, y_ft, epochs=args.ft_epochs, batch_size=args.ft_batch_size,
                          verbose=0, callbacks=callbacks)
            else:
                model.fit(x_ft, y_ft, epochs=args.ft_epochs, batch_size=args.ft_batch_size,
                          verbose=0)
            seconds = time.perf_counter() - start
            pred, cell = measure(name, model, x_test, y_test)
            before = base_predictions[name]
            ctt = ctt_rate(y_test, before, pred, supplanter=args.supplanter,
                           num_classes=NUM_CLASSES)
            cft = cft_rate(y_test, before, pred, num_classes=NUM_CLASSES)
            cell.update(seconds=seconds, ctt=float(ctt.overall),
                        cft=[float(v) for v in cft], cft_victim=float(cft[args.victim]))
            cells[key] = cell
            report.save()
            log(f"{key}: accuracy {cell['accuracy']:.4f}, CTT {cell['ctt']:+.3f}, "
                f"CFT victim {cell['cft_victim']:+.3f} ({seconds:.0f} s)")


# ----------------------------------------------------------------------
# Outputs.


def write_outputs(report, args):
    data = report.data
    cells = data.get("cells", {})
    lines = [f"# Ensembles ({data['settings']['protocol']} protocol, {data['settings']['dataset']})", "",
             f"Command: `{data['command']}`", ""]
    if data["settings"]["protocol"] == "flip":
        scenario, flip_label = FLIP_SCENARIOS[data["settings"].get("flips", "random")]
        lines += [f"Flips: {flip_label}, rate {data['settings']['rate']}.", "",
                  f"| defence | clean acc | {int(100 * data['settings']['rate'])}% flips acc | drop | max class CFT | "
                  "certified acc at 1 / 2 / 5 poisons (flipped) | seconds (clean + flipped) |",
                  "|---|---:|---:|---:|---:|---|---:|"]
        for name in data["settings"]["defences"]:
            clean, flipped = cells.get(f"clean|{name}"), cells.get(f"{scenario}|{name}")
            if not clean or not flipped:
                continue
            curve = flipped.get("certified_accuracy")
            shown = " / ".join(f"{curve[r]:.3f}" if r < len(curve) else "0" for r in (1, 2, 5)) if curve else "–"
            lines.append(
                f"| {name} | {clean['accuracy']:.4f} | {flipped['accuracy']:.4f} | "
                f"{clean['accuracy'] - flipped['accuracy']:+.4f} | {flipped['cft_max']:+.3f} | "
                f"{shown} | {clean['seconds'] + flipped['seconds']:.0f} |"
            )
    else:
        lines += ["| attack | defence | accuracy | CTT | CFT victim | certified acc at 1 poison |",
                  "|---|---|---:|---:|---:|---:|"]
        for key, cell in cells.items():
            attack, name = key.split("|")
            curve = cell.get("certified_accuracy")
            lines.append(
                f"| {attack} | {name} | {cell['accuracy']:.4f} | {cell['ctt']:+.3f} | "
                f"{cell['cft_victim']:+.3f} | {f'{curve[1]:.3f}' if curve and len(curve) > 1 else '–'} |"
            )
    md_path = os.path.splitext(args.out)[0] + ".md"
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return md_path


def plot(report, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = report.data
    cells = data.get("cells", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    if data["settings"]["protocol"] == "flip":
        flipped_scenario, flip_label = FLIP_SCENARIOS[data["settings"].get("flips", "random")]
        lines = [("clean", "-", "clean training set"),
                 (flipped_scenario, "--", f"{int(100 * args.rate)}% {flip_label}")]
    else:
        # Fine-tuning protocol: one line per attack the ensemble was trained under.
        attacks = sorted({key.split("|")[0] for key in cells})
        lines = [(attack, style, attack) for attack, style in zip(attacks, ("-", "--", ":", "-."))]
    for index, name in enumerate(data["settings"]["defences"]):
        if parse_defence(name)[0] != "partition":
            continue
        for scenario, style, what in lines:
            cell = cells.get(f"{scenario}|{name}")
            if cell is None or not cell.get("certified_accuracy"):
                continue
            curve = cell["certified_accuracy"]
            ax.plot(np.arange(len(curve)), curve, marker=".", linestyle=style,
                    color=colours[index % len(colours)], label=f"k={parse_defence(name)[1]}, {what}")
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("poisoned training examples (insertions, deletions or label flips)")
    ax.set_ylabel("certified test accuracy")
    ax.set_title(f"PartitionEnsemble (DPA) on {data['settings']['dataset']}, "
                 f"{data['settings']['model']}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)
    return args.plot


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        with open(args.out) as f:
            report = Report(args.out, json.load(f))
        print(write_outputs(report, args), plot(report, args) or "(no partition ensemble to plot)")
        return
    command = " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)
    report = Report(args.out, {})
    if os.path.exists(args.out):
        with open(args.out) as f:
            report.data = json.load(f)
        if report.data.get("settings", {}).get("protocol") not in (None, args.protocol):
            raise SystemExit(f"{args.out} holds another protocol's results; pass another --out")
        log(f"resuming {args.out}: {len(report.data.get('cells', {}))} cells kept")
    settings = {k: v for k, v in vars(args).items() if k not in ("report_only",)}
    report.data.update(
        command=command,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=machine_info(),
        settings=settings,
    )
    started = time.perf_counter()
    (run_flip if args.protocol == "flip" else run_finetune)(report, args)
    report.data["total_seconds"] = report.data.get("total_seconds", 0) + time.perf_counter() - started
    report.save()
    print(write_outputs(report, args), plot(report, args) or "(no partition ensemble to plot)")


if __name__ == "__main__":
    main()
