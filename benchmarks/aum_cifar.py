"""Area under the margin vs deep k-NN on the CIFAR subset, and sanitize + retrain.

For each seed, in one process, on the real CIFAR-10 subset (4,660 training
images), with the protocol of `defences_cifar.py` (`vgg_like()`, Adam 1e-3,
batch 64, 30 epochs):

1. train on the clean split: the clean accuracy, the confusion matrix the
   targeted flip is built from, and each detector's false alarms;
2. for each label attack (`RandomFlip(0.2)`, `TargetedFlip.from_confusion_matrix
   (cm, 0.2)`), train on the attacked split with a `MarginRecorder` in the
   `fit` call; score `AUMDetector` (mixture split, and AUM < 0) and
   `KNNDetector(k=50)` on the same model against the attack's mask, and
   the two combined (`rank_average`: mean of their ranks, flagging the mean
   of their counts);
3. with `--retrain`, sanitize the attacked split with the AUM report and
   train a fresh model from the same initial weights; recovery =
   (sanitized − attacked) / (clean − attacked), all three from this run.
   Policies: `drop` (drop what AUM flags), `relabel` (relabel it with the
   class the model favoured over the epochs), `oracle_drop` (drop exactly the
   attack's mask: the ceiling of any drop). A policy may add `+aug_gce`: the
   retrained model then also has `ImageAugmentation()` in front and is
   trained with `GeneralizedCrossentropy(q=0.7)`.
   With `--detect-defence aug_gce` the model the detectors read is itself
   trained with that defence (cells `<attack>@aug_gce|<seed>`), and
   `--retrain` sanitizes with its AUM report; recovery still compares with
   the undefended attacked cell `<attack>|<seed>` (run it without
   `--detect-defence`). `--attacks clean --detect-defence aug_gce` gives
   that model's false alarms on the clean split (`clean@aug_gce|<seed>`).

`--save-margins` keeps each detected cell's per-epoch margins beside `--out`
(`<out>.margins/*.npz`); `--rescore` then also scores the AUM over the
epochs from each of `START_EPOCHS` on (10–40), alone and combined with k-NN.

Usage (from the repository root; cells are saved as they finish and skipped
when already in `--out`):

    PYTHONPATH=. python benchmarks/aum_cifar.py --seeds 0,1,2 --retrain drop,relabel
    PYTHONPATH=. python benchmarks/aum_cifar.py --report-only --merge other.json
"""

import argparse
import datetime
import os
import shlex
import sys
import time

import numpy as np

# benchmarks/ is on sys.path when a script runs; the results files share one format.
from _machine import machine_info
from defences_cifar import load_merged
from defences_cifar import log
from defences_cifar import save_report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10_subset.npz"))
DEFAULT_OUT = os.path.join("benchmarks", "results", "aum_cifar.json")
NUM_CLASSES = 10
RATE = 0.2
ATTACKS = ("random_flip", "targeted_flip")
SANITIZERS = ("drop", "relabel", "oracle_drop")
TRAINING_DEFENCES = ("aug_gce",)
# First epochs whose margins count, compared by --rescore where margins were saved
# (epoch 0, every epoch, is the cell's own aum_gmm and aum+knn).
START_EPOCHS = (10, 20, 30, 40)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 .npz file")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument(
        "--retrain", default="",
        help=f"comma-separated policies: one of {SANITIZERS}, optionally +{'/+'.join(TRAINING_DEFENCES)}",
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--detect-defence", default="", choices=("",) + TRAINING_DEFENCES,
        help="train the attacked model the detectors read with this defence "
        "(cells '<attack>@<defence>|<seed>'; --retrain then sanitizes with its AUM "
        "report, cells '<attack>@<defence>|<policy>|<seed>')",
    )
    parser.add_argument(
        "--model-seed", type=int, default=None,
        help="seed of the attacked model the detectors read, when it should differ from the "
        "attack's (cells '<attack>[@<defence>]~m<model seed>|<seed>'): several runs on one "
        "attacked split, to combine their reports",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--rescore", action="store_true",
        help="score the stored AUM of every cell again with the current AUMDetector rule "
        "(and AUM + k-NN, and AUM from later epochs where margins were saved)",
    )
    parser.add_argument("--merge", default="", help="comma-separated JSON files to add to --out")
    parser.add_argument(
        "--save-margins", action="store_true",
        help="also write each detected cell's per-epoch margins to <out>.margins/<cell>.npz",
    )
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.attacks = [a for a in args.attacks.split(",") if a]
    args.retrain = [p for p in args.retrain.split(",") if p]
    policies = SANITIZERS + tuple(f"{s}+{d}" for s in SANITIZERS for d in TRAINING_DEFENCES)
    # "clean" with --detect-defence: the defended model's false alarms on clean data.
    attacks = ("clean",) + ATTACKS
    for name, values, allowed in (("attacks", args.attacks, attacks), ("retrain", args.retrain, policies)):
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            parser.error(f"unknown --{name} {unknown}; choose from {allowed}")
    return args


def train(x, y, data, seed, args, callbacks=(), defence=None):
    """A fresh `vgg_like()` trained on `(x, y)`; returns (model, record).

    `defence="aug_gce"` puts `ImageAugmentation()` in front of the model
    and compiles it with `GeneralizedCrossentropy(q=0.7)`, as the
    `aug_gce` cell of `defences_cifar.py`.
    """
    import keras

    import keras_poison as kp
    from keras_poison import metrics, models
    from keras_poison.experiments.scenarios import last_epochs_mean

    (x_test, y_test) = data[1]
    keras.utils.set_random_seed(seed)
    if defence is None:
        model = models.vgg_like(input_shape=x.shape[1:], num_classes=NUM_CLASSES, seed=seed)
    else:
        base = models.vgg_like(
            input_shape=x.shape[1:], num_classes=NUM_CLASSES, compile=False, seed=seed
        )
        inputs = keras.Input(x.shape[1:])
        model = keras.Model(inputs, base(kp.ImageAugmentation(seed=seed)(inputs)))
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=kp.GeneralizedCrossentropy(q=0.7),
            metrics=["accuracy"],
        )
    start = time.perf_counter()
    history = model.fit(
        x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
        validation_data=(x_test, y_test), callbacks=list(callbacks), verbose=2,
    )
    seconds = time.perf_counter() - start
    predicted = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=-1)
    curve = [float(v) for v in history.history["val_accuracy"]]
    return model, {
        "test_accuracy": metrics.accuracy(y_test, predicted),
        "test_accuracy_last5": last_epochs_mean(curve),
        "val_accuracy": curve,
        "train_accuracy": float(history.history["accuracy"][-1]),
        "confusion_matrix": metrics.confusion_matrix(y_test, predicted, num_classes=NUM_CLASSES).tolist(),
        "train_seconds": seconds,
    }


def scored(report, mask):
    metrics = report.evaluate(mask).as_dict()
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}


def aum_detections(aum, mask):
    """The AUM report scored with its own (mixture) flags and with AUM < 0.

    Where the mask has poisoned examples, also the best F1 any threshold on
    the AUM could reach, the threshold picked with the truth: a bound on
    every flagging rule for this score, not a rule a user could apply.
    """
    detections = {
        "aum_gmm": dict(scored(aum, mask), gmm_cut=aum.details.get("gmm_cut")),
        "aum_below_0": scored(aum.with_flagged(-aum.scores < 0.0), mask),
    }
    if mask.any():
        hits = np.cumsum(mask[aum.ranking])
        f1 = 2 * hits / (np.arange(1, len(mask) + 1) + mask.sum())
        best = int(np.argmax(f1))
        detections["aum_best_threshold_f1"] = {"f1": float(f1[best]), "num_flagged": best + 1}
    return detections


def combined_detections(aum, knn, knn_flagged, mask):
    """AUM and k-NN on the same model, ranks averaged (`rank_average`).

    The count flagged is the mean of both detectors' counts, what
    `rank_average`'s default takes from live reports; it is passed
    explicitly because a stored cell keeps k-NN's scores and count, not
    its flags (`stored_knn_scores`).
    """
    import keras_poison as kp

    count = int(np.round(np.mean([aum.flagged.sum(), knn_flagged])))
    return scored(kp.rank_average(aum, knn, num_flagged=count), mask)


def stored_knn_scores(cell):
    """`(report, flagged count)` of a measured cell's k-NN: its scores, no flags."""
    import keras_poison as kp

    scores = np.asarray(cell["knn_scores"])
    report = kp.DetectionReport(scores, np.zeros(len(scores), bool), detector="knn")
    return report, cell["detections"]["knn"]["num_flagged"]


def start_epoch_detections(cell, labels, mask, seed):
    """AUM over the epochs from each of START_EPOCHS on, alone and ranked with k-NN.

    Reads the per-epoch margins `--save-margins` wrote; the first epochs of
    a model trained from scratch say little about any label.
    """
    import keras_poison as kp

    margins = np.load(cell["margins_file"])["margins"]
    detections = {}
    for start in START_EPOCHS:
        if start >= len(margins):
            continue
        aum = kp.AUMDetector(seed=seed).detect(None, labels, aum=margins[start:].mean(axis=0, dtype=np.float64))
        detections[f"aum_gmm_from_epoch_{start}"] = scored(aum, mask)
        if "knn_scores" in cell:
            detections[f"aum_from_epoch_{start}+knn"] = combined_detections(aum, *stored_knn_scores(cell), mask)
    return detections


def stored_aum_report(cell, labels, seed):
    """The AUM report of a measured cell, rebuilt from its stored margins."""
    import keras_poison as kp

    return kp.AUMDetector(seed=seed).detect(
        None, labels, aum=np.asarray(cell["aum"]),
        suggested_labels=np.asarray(cell["aum_suggested_labels"]),
    )


def attacked_labels(attack, seed, x, y, clean_cell):
    """`(labels, mask)` after `attack`; the targeted flip reads the clean cell's confusion matrix."""
    import keras_poison as kp

    if attack == "clean":
        return y, np.zeros(len(y), bool)
    if attack == "random_flip":
        poison = kp.RandomFlip(rate=RATE, num_classes=NUM_CLASSES, seed=seed)
    else:
        cm = np.asarray(clean_cell["confusion_matrix"])
        poison = kp.TargetedFlip.from_confusion_matrix(cm, rate=RATE, seed=seed)
    _, y_p, mask = poison.poison(x, y)
    return y_p, mask


def stored_attack_labels(attack, seed, y, cells):
    """`attacked_labels` for rescoring stored cells, without the images."""
    # Label flips key on the example index and label only, not on the image.
    placeholder = np.zeros((len(y), 1), "float32")
    return attacked_labels(attack, seed, placeholder, y, cells.get(f"clean|{seed}"))


def undefended(name):
    """The attack of a cell name: `random_flip@aug_gce` (detected on a defended model) -> `random_flip`."""
    return name.partition("@")[0].partition("~")[0]


def rescore(report, y):
    """Scores every stored AUM again with the current `AUMDetector` rule."""
    for key, cell in report["cells"].items():
        attack, *rest = key.split("|")
        attack = undefended(attack)
        if len(rest) != 1 or "aum" not in cell:
            continue
        seed = int(rest[0])
        labels, mask = stored_attack_labels(attack, seed, y, report["cells"])
        aum = stored_aum_report(cell, labels, seed)
        cell["detections"].update(aum_detections(aum, mask))
        if "knn_scores" in cell:
            cell["detections"]["aum+knn"] = combined_detections(aum, *stored_knn_scores(cell), mask)
        if os.path.exists(cell.get("margins_file", "")):
            cell["detections"].update(start_epoch_detections(cell, labels, mask, seed))
        cell["rescored"] = True


def save_margins(out, key, margins):
    """Writes the recorded margins of cell `key` beside `out`; returns the path."""
    folder = os.path.splitext(out)[0] + ".margins"
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, key.replace("|", "_").replace("@", "-") + ".npz")
    np.savez_compressed(path, margins=np.stack(margins))
    return path


def ensemble_detections(report, y):
    """Several detection runs on one attacked split (`--model-seed`), combined.

    For each cell `<attack>|<seed>` with runs `<attack>~m<k>|<seed>` beside
    it: the AUM averaged over the runs (more training trajectories behind
    each example's margin), scored with the default rule, and k-NN's scores
    averaged the same way and ranked with it. Written into the first cell.
    """
    import keras_poison as kp

    cells = report["cells"]
    for key, cell in cells.items():
        name, _, seed = key.partition("|")
        if "~" in name or "|" in seed or "aum" not in cell:
            continue
        runs = [cell] + [c for k, c in sorted(cells.items()) if k.startswith(f"{name}~m") and k.endswith(f"|{seed}")]
        if len(runs) < 2:
            continue
        labels, mask = stored_attack_labels(undefended(name), int(seed), y, cells)
        aum = kp.AUMDetector(seed=int(seed)).detect(None, labels, aum=np.mean([r["aum"] for r in runs], axis=0))
        cell["detections"][f"aum_mean_of_{len(runs)}_runs"] = scored(aum, mask)
        if all("knn_scores" in r for r in runs):
            knn = kp.DetectionReport(np.mean([r["knn_scores"] for r in runs], axis=0), np.zeros(len(y), bool))
            knn_flagged = np.mean([r["detections"]["knn"]["num_flagged"] for r in runs])
            cell["detections"][f"aum+knn_mean_of_{len(runs)}_runs"] = combined_detections(aum, knn, knn_flagged, mask)


def detect_cell(x, y, mask, data, seed, args, key, defence=None):
    """Train with a MarginRecorder; score AUM and k-NN on that model."""
    import keras_poison as kp

    recorder = kp.MarginRecorder(x, y)
    model, record = train(x, y, data, seed, args, callbacks=[recorder], defence=defence)
    start = time.perf_counter()
    aum = recorder.detector_report(seed=seed)
    detections = aum_detections(aum, mask)
    detections["aum_gmm"]["seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    knn = kp.KNNDetector(model, k=50).detect(x, y)
    detections["knn"] = dict(scored(knn, mask), seconds=time.perf_counter() - start)
    detections["aum+knn"] = combined_detections(aum, knn, knn.flagged.sum(), mask)
    flagged_poisoned = aum.flagged & mask
    record["detections"] = detections
    record["aum_relabel_accuracy_on_flagged_poisoned"] = (
        float(np.mean(aum.suggested_labels[flagged_poisoned] == data[0][1][flagged_poisoned]))
        if flagged_poisoned.any() else None
    )
    record["aum_recorded_epochs"] = len(recorder.margins)
    # train_seconds includes the recorder's passes; this is their share.
    record["aum_recording_seconds"] = recorder.seconds
    # Kept so a later run can sanitize with this very report without retraining.
    record["aum"] = [round(float(v), 4) for v in recorder.area_under_margin]
    record["aum_suggested_labels"] = recorder.suggested_labels.tolist()
    # k-NN's per-example scores too, so the two detectors can be combined later.
    record["knn_scores"] = [round(float(v), 4) for v in knn.scores]
    if args.save_margins:
        # (epochs, n) float32: too big for the JSON, read back to study start_epoch.
        record["margins_file"] = save_margins(args.out, key, recorder.margins)
    return record, aum


def main(argv=None):
    args = parse_args(argv)
    report = load_merged(args.out, args.merge)
    if not args.report_only:
        import keras
        import tensorflow as tf

        import keras_poison as kp
        from keras_poison import datasets

        (x_train, y_train), (x_test, y_test) = datasets.load("cifar10", path=args.data)
        data = ((x_train.astype("float32") / 255.0, y_train), (x_test.astype("float32") / 255.0, y_test))
        x, y = data[0]
        report["commands"].append(" ".join(shlex.quote(a) for a in ["python"] + sys.argv))
        info = machine_info()
        report["meta"] = {
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu_model": info.get("cpu_model"), "nproc": info.get("nproc"),
            "tensorflow": tf.__version__, "keras": keras.__version__, "epochs": args.epochs,
        }

        def run(key, make):
            if key in report["cells"]:
                log(f"skip {key} (already measured)")
                return report["cells"][key]
            log(f"\n=== {key} ===")
            report["cells"][key] = make()
            save_report(args.out, report)
            return report["cells"][key]

        for seed in args.seeds:
            clean_mask = np.zeros(len(y), bool)
            clean = run(
                f"clean|{seed}", lambda: detect_cell(x, y, clean_mask, data, seed, args, f"clean|{seed}")[0]
            )
            for attack in args.attacks:
                y_p, mask = attacked_labels(attack, seed, x, y, clean)
                reports = {}

                # The model the detectors read: undefended, or trained with --detect-defence.
                detected = f"{attack}@{args.detect_defence}" if args.detect_defence else attack
                model_seed = seed if args.model_seed is None else args.model_seed
                if model_seed != seed:
                    detected += f"~m{model_seed}"

                def attacked():
                    record, reports["aum"] = detect_cell(
                        x, y_p, mask, data, model_seed, args, f"{detected}|{seed}",
                        defence=args.detect_defence or None,
                    )
                    return record

                run(f"{detected}|{seed}", attacked)
                for policy in args.retrain:

                    def retrained(policy=policy):
                        sanitizer, _, defence = policy.partition("+")
                        if sanitizer == "oracle_drop":
                            xs, ys = x[~mask], y_p[~mask]
                        else:
                            if "aum" not in reports:
                                # The attacked cell came from an earlier run: rebuild its report.
                                reports["aum"] = stored_aum_report(
                                    report["cells"][f"{detected}|{seed}"], y_p, seed
                                )
                            xs, ys = kp.Sanitize(reports["aum"], action=sanitizer).apply(x, y_p)
                        _, record = train(xs, ys, data, seed, args, defence=defence or None)
                        record["examples_kept"] = int(len(ys))
                        record["labels_correct"] = (
                            float(np.mean(ys == y)) if sanitizer == "relabel" else None
                        )
                        return record

                    run(f"{detected}|{policy}|{seed}", retrained)
        save_report(args.out, report)
    if args.rescore:
        from keras_poison import datasets

        (_, y_train), _ = datasets.load("cifar10", path=args.data)
        rescore(report, y_train)
        ensemble_detections(report, y_train)
    # Also keeps what --merge brought in.
    save_report(args.out, report)
    markdown = summary(report)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(markdown)
    print(markdown)


def summary(report):
    """Detection and retraining tables from the cells of `report`."""
    cells = report["cells"]
    lines = ["# AUM vs deep k-NN on the CIFAR subset", "", "Commands:", ""]
    lines += [f"    {c}" for c in report["commands"]] + [""]
    lines += ["| cell | test acc % | detector | flagged | precision | recall | F1 | AUROC |",
              "|---|---|---|---|---|---|---|---|"]
    for key, cell in sorted(cells.items()):
        for name, d in cell.get("detections", {}).items():
            if name == "aum_best_threshold_f1":
                lines.append(f"| {key.replace('|', ' · ')} | | AUM, best threshold (picked with the truth) "
                             f"| {d['num_flagged']} | | | {d['f1']:.2f} | |")
                continue
            lines.append(
                f"| {key.replace('|', ' · ')} | {100 * cell['test_accuracy']:.1f} | {name} | {d['num_flagged']} | "
                + " | ".join("—" if d[m] is None else f"{d[m]:.2f}" for m in ("precision", "recall", "f1", "auroc"))
                + " |"
            )
    lines += ["", "| attack | policy | seed | clean % | attacked % | sanitized % | recovery | "
              "recovery (last-5 means) | kept | labels correct |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, cell in sorted(cells.items()):
        parts = key.split("|")
        if len(parts) != 3:
            continue
        attack, policy, seed = parts
        # Recovery is against the undefended attacked model, whichever model detected.
        clean, hit = cells.get(f"clean|{seed}"), cells.get(f"{undefended(attack)}|{seed}")
        if clean is None or hit is None:
            continue
        figures = []
        for field in ("test_accuracy", "test_accuracy_last5"):
            gap = clean[field] - hit[field]
            figures.append(f"{(cell[field] - hit[field]) / gap:.2f}" if gap else "—")
        correct = cell.get("labels_correct")
        lines.append(
            f"| {attack} | {policy} | {seed} | {100 * clean['test_accuracy']:.1f} | "
            f"{100 * hit['test_accuracy']:.1f} | {100 * cell['test_accuracy']:.1f} | {figures[0]} | "
            f"{figures[1]} | {cell['examples_kept']} | {'—' if correct is None else f'{100 * correct:.1f}%'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
