"""Label-noise detectors against flips placed to evade them (issue 20).

For each seed, in one process:

1. the attacker's surrogate: a model trained on the clean training split
   (the victim's protocol) gives penultimate features, and k-fold
   out-of-sample probabilities (`LabelIssueDetector.out_of_sample_probabilities`,
   the probabilities confident learning itself reads);
2. the attacks, each at `--rate`: `RandomFlip` (the reference),
   `EvasiveFlip.least_confident` (surrogate probabilities: flip to the
   runner-up where the margin is smallest; aimed at AUM and confident
   learning) and `EvasiveFlip.neighbour_disagreement` (surrogate features,
   k = 50 as the victim's kNN: flip to the neighbours' plurality; aimed at
   deep kNN);
3. the victim trains a fresh model on the attacked split with a
   `MarginRecorder` in `fit`, and runs `AUMDetector` (its margins),
   `KNNDetector(k=50)` (its features) and `LabelIssueDetector` (its own k
   folds on the attacked split); each report is scored against the
   attack's mask, and so is their `rank_average` (the three evidences
   combined), once with its own count and once flagging `--budget` of the
   examples (a defender who bounds the attacker's budget, as
   `SpectralSignatureDetector(expected_poison_rate=...)` does). The test accuracy of the model trained on the attacked
   split is reported too: an evasive flip that does no damage evades
   nothing that matters.
4. two defences of the accuracy, each from the same initial weights:
   `sanitized`, the attacked split with what `rank_average` flags dropped,
   retrained (and the same with the budget's count, and with the budget's
   flags relabelled to `rank_average`'s suggested labels, AUM's, instead
   of dropped); and `oracle drop`, exactly the flipped examples dropped,
   the ceiling of any detector that drops; `gce`, the attacked split trained with
   `GeneralizedCrossentropy(q=0.7)` (the loss of `label_flip_defences()`),
   and likewise `sce` (`SymmetricCrossentropy(0.1, 1.0)`) and `bootstrap`
   (`BootstrappingCrossentropy(0.95)`), the other noise-robust losses.
   Recovery = (defended − attacked) / (clean − attacked), with `clean` the
   surrogate's accuracy (the same protocol on the clean split).

Usage (from the repository root; cells are saved as they finish and skipped
when already in `--out`):

    PYTHONPATH=. python benchmarks/evasive_flips.py --dataset mnist5k --seeds 0,1,2
    PYTHONPATH=. python benchmarks/evasive_flips.py --report-only
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
CIFAR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10_subset.npz"))
NUM_CLASSES = 10
ATTACKS = ("random_flip", "evasive_confidence", "evasive_knn")
ATTACK_LABELS = {
    "random_flip": "random flips",
    "evasive_confidence": "evasive: least confident → runner-up",
    "evasive_knn": "evasive: neighbours' plurality",
}
DETECTORS = ("aum", "knn", "label_issues", "rank_average", "rank_average_budget")
DETECTOR_LABELS = {
    "aum": "AUMDetector",
    "knn": "KNNDetector(k=50)",
    "label_issues": "LabelIssueDetector (confident learning)",
    "rank_average": "rank_average of all three",
    "rank_average_budget": "rank_average, flagging the budget",
}
# Detectors of feature-space outliers, made for backdoors: read the
# victim's features, not combined in rank_average.
# The noise-robust losses besides GCE, each trained on the attacked split.
ROBUST_LOSSES = {
    "sce": ("SymmetricCrossentropy(0.1, 1.0)", lambda kp: kp.SymmetricCrossentropy(0.1, 1.0)),
    "bootstrap": ("BootstrappingCrossentropy(0.95)", lambda kp: kp.BootstrappingCrossentropy(0.95)),
}
OUTLIER_DETECTORS = ("spectral_signature", "activation_clustering")
OUTLIER_LABELS = {
    "spectral_signature": "SpectralSignatureDetector(expected_poison_rate=rate)",
    "activation_clustering": "ActivationClusteringDetector()",
}
SETTINGS = {
    # dataset: (model, epochs, fold epochs)
    "mnist5k": ("lenet5", 10, 10),
    "cifar10": ("vgg_like", 30, 20),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k", choices=sorted(SETTINGS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument(
        "--budget", type=float, default=0.2,
        help="the poisoning budget the defender assumes: rank_average_budget flags this fraction",
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.model, args.epochs, args.fold_epochs = SETTINGS[args.dataset]
    args.out = args.out or os.path.join("benchmarks", "results", f"evasive_flips_{args.dataset}.json")
    return args


def log(message):
    print(message, flush=True)


def load_json(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"cells": {}, "commands": []}


def save_json(path, results):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)


def load_data(dataset):
    from keras_poison import datasets

    if dataset == "cifar10":
        (x, y), (x_test, y_test) = datasets.load("cifar10", path=CIFAR)
    else:
        (x, y), (x_test, y_test) = datasets.load(dataset)
    return (x.astype("float32") / 255.0, y), (x_test.astype("float32") / 255.0, y_test)


def build_model(args, seed, input_shape):
    import keras

    import keras_poison as kp

    keras.utils.set_random_seed(seed)
    return getattr(kp.models, args.model)(input_shape=input_shape, num_classes=NUM_CLASSES, seed=seed)


def label_detector(args, seed, input_shape):
    import keras_poison as kp

    return kp.LabelIssueDetector(
        build_model=lambda: build_model(args, seed, input_shape),
        num_folds=args.folds, epochs=args.fold_epochs, batch_size=args.batch_size, seed=seed,
    )


def fit(args, seed, x, y, test, callbacks=(), loss=None):
    import keras

    import keras_poison as kp

    model = build_model(args, seed, x.shape[1:])
    if loss is not None:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=list(callbacks))
    x_test, y_test = test
    y_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=-1)
    return model, kp.accuracy(y_test, y_pred)


def surrogate(args, seed, data):
    """The attacker's view of the clean split: features and out-of-sample probabilities."""
    import keras

    import keras_poison as kp

    (x, y), test = data
    start = time.perf_counter()
    model, clean_accuracy = fit(args, seed, x, y, test)
    features = kp.defences.detectors.extract_features(model, x)
    keras.backend.clear_session(free_memory=True)
    probabilities = label_detector(args, seed, x.shape[1:]).out_of_sample_probabilities(x, y)
    log(f"  surrogate: clean test accuracy {clean_accuracy:.4f} ({time.perf_counter() - start:.0f} s)")
    return features, probabilities, clean_accuracy


def attack_of(name, args, seed, y, features, probabilities):
    import keras_poison as kp

    if name == "random_flip":
        return kp.RandomFlip(args.rate, NUM_CLASSES, seed=seed)
    if name == "evasive_confidence":
        return kp.EvasiveFlip.least_confident(probabilities, y, args.rate, seed=seed)
    return kp.EvasiveFlip.neighbour_disagreement(
        features, y, args.rate, k=50, num_classes=NUM_CLASSES, seed=seed
    )


def outlier_reports(args, model, x, y):
    """The feature-outlier detectors' reports on the victim `model`'s features."""
    import keras_poison as kp

    features = kp.defences.detectors.extract_features(model, x)
    return {
        "spectral_signature": kp.SpectralSignatureDetector(
            expected_poison_rate=args.rate).detect(None, y, features=features),
        "activation_clustering": kp.ActivationClusteringDetector().detect(
            None, y, features=features),
    }


def robust_loss_accuracies(args, seed, x, y, test):
    """`{"<loss>_test_accuracy": ...}` of each `ROBUST_LOSSES` model on `(x, y)`."""
    import keras

    import keras_poison as kp

    accuracies = {}
    for name, (_, make) in ROBUST_LOSSES.items():
        _, accuracies[f"{name}_test_accuracy"] = fit(args, seed, x, y, test, loss=make(kp))
        keras.backend.clear_session(free_memory=True)
    return accuracies


def missing_parts(cell):
    """What a cell of an earlier version of this script lacks."""
    missing = set()
    if "oracle_drop_test_accuracy" not in cell:
        missing.add("oracle")
    if not all(d in cell["detections"] for d in OUTLIER_DETECTORS):
        missing.add("outliers")
    if not all(f"{loss}_test_accuracy" in cell for loss in ROBUST_LOSSES):
        missing.add("losses")
    return missing


def complete_cell(cell, attack, args, seed, data):
    """Adds to `cell` what it lacks, on the same attacked split (same seed)."""
    import keras

    (x, y), test = data
    x_p, y_p, mask = attack.poison(x, y)
    missing = missing_parts(cell)
    if "oracle" in missing:
        # The ceiling of any drop: exactly the flipped examples gone.
        _, cell["oracle_drop_test_accuracy"] = fit(args, seed, x[~mask], y[~mask], test)
        keras.backend.clear_session(free_memory=True)
    if "outliers" in missing:
        # The victim model again (same seed and data), its features read.
        model, _ = fit(args, seed, x_p, y_p, test)
        for d, report in outlier_reports(args, model, x_p, y_p).items():
            cell["detections"][d] = report.evaluate(mask).as_dict()
        keras.backend.clear_session(free_memory=True)
    if "losses" in missing:
        cell.update(robust_loss_accuracies(args, seed, x_p, y_p, test))
    log(f"  {cell['attack']}: completed {sorted(missing)}")


def run_cell(name, attack, args, seed, data):
    import keras

    import keras_poison as kp

    (x, y), test = data
    x_p, y_p, mask = attack.poison(x, y)
    start = time.perf_counter()
    recorder = kp.MarginRecorder(x_p, y_p)
    model, accuracy = fit(args, seed, x_p, y_p, test, callbacks=[recorder])
    reports = {
        "aum": recorder.detector_report(seed=seed),
        "knn": kp.KNNDetector(model, k=50).detect(x_p, y_p),
        **outlier_reports(args, model, x_p, y_p),
    }
    keras.backend.clear_session(free_memory=True)
    reports["label_issues"] = label_detector(args, seed, x.shape[1:]).detect(x_p, y_p)
    three = (reports["aum"], reports["knn"], reports["label_issues"])
    reports["rank_average"] = kp.rank_average(*three)
    # A defender who bounds the attacker's budget flags that many.
    budget = int(round(args.budget * len(y_p)))
    reports["rank_average_budget"] = kp.rank_average(*three, num_flagged=budget)
    keep = ~reports["rank_average"].flagged
    _, sanitized = fit(args, seed, x_p[keep], y_p[keep], test)
    keras.backend.clear_session(free_memory=True)
    keep = ~reports["rank_average_budget"].flagged
    _, sanitized_budget = fit(args, seed, x_p[keep], y_p[keep], test)
    keras.backend.clear_session(free_memory=True)
    # Relabelled instead of dropped: the examples evasive flips pick are
    # the informative ones near the class boundaries.
    x_r, y_r = kp.Sanitize(reports["rank_average_budget"], action="relabel").apply(x_p, y_p)
    _, relabelled_budget = fit(args, seed, x_r, y_r, test)
    keras.backend.clear_session(free_memory=True)
    _, gce = fit(args, seed, x_p, y_p, test, loss=kp.GeneralizedCrossentropy(q=0.7))
    keras.backend.clear_session(free_memory=True)
    robust = robust_loss_accuracies(args, seed, x_p, y_p, test)
    cell = {
        "attack": name,
        "seed": seed,
        "rate": args.rate,
        "poisoned": int(mask.sum()),
        "attacked_test_accuracy": accuracy,
        "passing_flips": (
            int(np.sum(attack.scores >= 0)) if isinstance(attack, kp.EvasiveFlip) else None
        ),
        "detections": {d: reports[d].evaluate(mask).as_dict()
                       for d in DETECTORS + OUTLIER_DETECTORS},
        "sanitized_test_accuracy": sanitized,
        "sanitized_budget_test_accuracy": sanitized_budget,
        "relabelled_budget_test_accuracy": relabelled_budget,
        "gce_test_accuracy": gce,
        **robust,
        "seconds": time.perf_counter() - start,
    }
    log(f"  {name}: attacked test accuracy {accuracy:.4f}; " + ", ".join(
        f"{d} F1 {cell['detections'][d]['f1']:.3f}" for d in DETECTORS
    ) + f"; sanitized {sanitized:.4f}, at the budget {sanitized_budget:.4f}, relabelled "
        f"{relabelled_budget:.4f}, gce {gce:.4f} "
        f"({cell['seconds']:.0f} s)")
    return cell


def mean_std(values, digits=2):
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def clean_accuracy(results, cell):
    return results["surrogates"][str(cell["seed"])]["clean_test_accuracy"]


def recovery(results, cell, key):
    if key not in cell:
        return None
    clean, attacked = clean_accuracy(results, cell), cell["attacked_test_accuracy"]
    return None if clean == attacked else (cell[key] - attacked) / (clean - attacked)


def write_markdown(path, results):
    cells = results["cells"].values()
    seeds = sorted({c["seed"] for c in cells})
    meta = results.get("meta", {})
    lines = [
        f"# Detectors against evasive flips ({meta.get('dataset', '?')})",
        "",
        "Commands:",
        "",
        *[f"    {c}" for c in dict.fromkeys(results["commands"])],  # each once
        "",
        f"Machine: {meta.get('cpu_model', '?')}, nproc {meta.get('nproc', '?')}; "
        f"model {meta.get('model', '?')}, {meta.get('epochs', '?')} epochs, "
        f"{meta.get('folds', '?')} folds × {meta.get('fold_epochs', '?')} epochs for "
        f"confident learning; rate {meta.get('rate', '?')}; seeds {seeds}. F1 against "
        "the attack's mask, mean ± population std over seeds.",
        "",
        "| attack | " + " | ".join(DETECTOR_LABELS[d] + " F1" for d in DETECTORS)
        + " | attacked test accuracy | recovery: sanitized | recovery: sanitized at the budget "
        "| recovery: relabelled at the budget | recovery: GCE | recovery: oracle drop "
        "| flips with score ≥ 0 |",
        "|---|" + "---|" * (len(DETECTORS) + 7),
    ]
    for attack in ATTACKS:
        mine = [c for c in cells if c["attack"] == attack]
        if not mine:
            continue
        f1 = [mean_std([c["detections"][d]["f1"] for c in mine]) for d in DETECTORS]
        passing = [c["passing_flips"] for c in mine if c["passing_flips"] is not None]
        recoveries = [
            mean_std([recovery(results, c, key) for c in mine])
            for key in (
                "sanitized_test_accuracy", "sanitized_budget_test_accuracy",
                "relabelled_budget_test_accuracy", "gce_test_accuracy", "oracle_drop_test_accuracy",
            )
        ]
        lines.append(
            f"| {ATTACK_LABELS[attack]} | " + " | ".join(f1)
            + f" | {mean_std([100 * c['attacked_test_accuracy'] for c in mine], 1)} "
            f"| {' | '.join(recoveries)} "
            f"| {', '.join(map(str, passing)) if passing else '—'} |"
        )
    outlier_rows = []
    for attack in ATTACKS:
        mine = [c for c in cells if c["attack"] == attack
                and all(d in c["detections"] for d in OUTLIER_DETECTORS)]
        if mine:
            outlier_rows.append(
                f"| {ATTACK_LABELS[attack]} | " + " | ".join(
                    mean_std([c["detections"][d]["f1"] for c in mine]) + " ("
                    + ", ".join(f"{c['detections'][d]['f1']:.3f}" for c in mine) + ")"
                    for d in OUTLIER_DETECTORS) + " |")
    if outlier_rows:
        lines += ["", "Feature-outlier detectors on the victim's features (F1, mean ± std, per seed):",
                  "", "| attack | " + " | ".join(OUTLIER_LABELS[d] for d in OUTLIER_DETECTORS) + " |",
                  "|---|" + "---|" * len(OUTLIER_DETECTORS), *outlier_rows]
    loss_rows = []
    for attack in ATTACKS:
        mine = [c for c in cells if c["attack"] == attack
                and all(f"{loss}_test_accuracy" in c for loss in ROBUST_LOSSES)]
        if mine:
            loss_rows.append(f"| {ATTACK_LABELS[attack]} | " + " | ".join(
                mean_std([recovery(results, c, key) for c in mine]) for key in
                ["gce_test_accuracy", *[f"{loss}_test_accuracy" for loss in ROBUST_LOSSES]]) + " |")
    if loss_rows:
        lines += ["", "Noise-robust losses on the attacked split (recovery, mean ± std over seeds):",
                  "", "| attack | GeneralizedCrossentropy(q=0.7) | "
                  + " | ".join(label for label, _ in ROBUST_LOSSES.values()) + " |",
                  "|---|" + "---|" * (1 + len(ROBUST_LOSSES)), *loss_rows]
    clean = [c for c in results.get("surrogates", {}).values()]
    if clean:
        lines += ["", "Clean test accuracy (the surrogate, trained on the clean split): "
                  + mean_std([100 * c["clean_test_accuracy"] for c in clean]) + "."]
    lines += ["", "Per seed (F1: " + ", ".join(DETECTORS) + "):", ""]
    for c in sorted(cells, key=lambda c: (c["attack"], c["seed"])):
        lines.append(
            f"- {ATTACK_LABELS[c['attack']]}, seed {c['seed']}: "
            + ", ".join(f"{c['detections'][d]['f1']:.3f}" for d in DETECTORS)
            + f"; accuracy: clean {100 * clean_accuracy(results, c):.1f}, attacked "
            f"{100 * c['attacked_test_accuracy']:.1f}, sanitized "
            f"{100 * c['sanitized_test_accuracy']:.1f}, sanitized at the budget "
            f"{100 * c['sanitized_budget_test_accuracy']:.1f}, relabelled at the budget "
            f"{100 * c['relabelled_budget_test_accuracy']:.1f}, GCE {100 * c['gce_test_accuracy']:.1f}"
            + (f", oracle drop {100 * c['oracle_drop_test_accuracy']:.1f}"
               if "oracle_drop_test_accuracy" in c else "")
        )
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    results = load_json(args.out)
    results.setdefault("surrogates", {})
    if not args.report_only:
        import keras
        import tensorflow as tf

        data = load_data(args.dataset)
        results["commands"].append(
            " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)
        )
        info = machine_info()
        results["meta"] = {
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu_model": info.get("cpu_model"), "nproc": info.get("nproc"),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "dataset": args.dataset, "model": args.model, "epochs": args.epochs,
            "folds": args.folds, "fold_epochs": args.fold_epochs, "rate": args.rate,
            "budget": args.budget,
        }
        for seed in args.seeds:
            todo = [a for a in ATTACKS if f"{a}|{seed}" not in results["cells"]]
            stale = [a for a in ATTACKS if f"{a}|{seed}" in results["cells"]
                     and missing_parts(results["cells"][f"{a}|{seed}"])]
            if not todo and not stale:
                continue
            log(f"\n=== seed {seed} ===")
            # Also the clean accuracy every recovery is measured against.
            features, probabilities, clean = surrogate(args, seed, data)
            results["surrogates"][str(seed)] = {"clean_test_accuracy": clean}
            for name in todo + stale:
                attack = attack_of(name, args, seed, data[0][1], features, probabilities)
                if name in todo:
                    results["cells"][f"{name}|{seed}"] = run_cell(name, attack, args, seed, data)
                cell = results["cells"][f"{name}|{seed}"]
                if missing_parts(cell):  # a fresh cell lacks the oracle
                    complete_cell(cell, attack, args, seed, data)
                save_json(args.out, results)
                write_markdown(os.path.splitext(args.out)[0] + ".md", results)
    save_json(args.out, results)
    write_markdown(os.path.splitext(args.out)[0] + ".md", results)


if __name__ == "__main__":
    main()
