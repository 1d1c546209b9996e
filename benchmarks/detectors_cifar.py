"""Detectors against ground truth, and sanitize + retrain (issue 5, §4).

For each attack, on the real CIFAR-10 subset (4,660 training images):

1. poison the training split (same attacks and seeds as `defences_cifar.py`:
   `RandomFlip(0.2)`, `TargetedFlip.from_confusion_matrix(cm, 0.2)` with the
   clean model's confusion matrix from `defences_cifar.json`, and
   `ClassPatternNoise(epsilon=16/255)`);
2. train `vgg_like()` on it for 30 epochs (Adam 1e-3, batch 64), the model
   whose penultimate features the feature-space detectors read, and whose
   test accuracy is the attacked figure;
3. run every detector, timed, and score its report against the attack's
   ground-truth mask (precision, recall, F1, AUROC);
4. with `--art` (run under the separate venv of `art_detectors.py`), run
   ART 1.20's `ActivationDefence` and `SpectralSignatureDefense` on the same
   model and data, in the same process;
5. sanitize the training split with the `LabelIssueDetector` report (drop,
   and relabel with its suggested labels) and retrain from the same initial
   weights; recovery = (sanitized − attacked) / (clean − attacked).

The `clean` attack runs the same steps, which gives each detector's false
alarms and what sanitizing costs on clean data.

Usage (from the repository root; stages are saved as they finish and skipped
when already in `--out`):

    PYTHONPATH=. python benchmarks/detectors_cifar.py --attacks clean,random_flip
    PYTHONPATH=. python benchmarks/detectors_cifar.py --report-only
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
DEFAULT_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10_subset.npz"))
DEFAULT_OUT = os.path.join("benchmarks", "results", "detectors_cifar.json")
DEFENCES_RESULTS = os.path.join(REPO_ROOT, "benchmarks", "results", "defences_cifar.json")
NUM_CLASSES = 10
RATE = 0.2
ATTACKS = ("clean", "random_flip", "targeted_flip", "class_pattern")
ATTACK_LABELS = {
    "clean": "clean",
    "random_flip": "random flip 20%",
    "targeted_flip": "targeted flip 20%",
    "class_pattern": "class-pattern noise ε=16/255",
}
LABEL_ATTACKS = ("clean", "random_flip", "targeted_flip")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--attacks", default="clean,random_flip,targeted_flip,class_pattern")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, default=3, help="LabelIssueDetector folds")
    parser.add_argument("--fold-epochs", type=int, default=20)
    parser.add_argument("--knn-k", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--retrain",
        default="relabel,drop,consensus",
        help="sanitize policies to retrain with: relabel / drop (LabelIssueDetector's "
        "report), consensus (relabel where LabelIssueDetector and k-NN agree)",
    )
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist5k"])
    parser.add_argument("--model", default="vgg_like", choices=["vgg_like", "lenet5"])
    parser.add_argument("--art", action="store_true", help="also run ART 1.20 (needs its venv)")
    parser.add_argument(
        "--detect-only",
        action="store_true",
        help="re-run only the feature-space and pattern detectors (and ART), on cached "
        "weights when there are some; keeps the stored K-fold and retraining stages",
    )
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--merge", default="", help="comma-separated JSON files to merge into --out")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.attacks = [a for a in args.attacks.split(",") if a]
    for attack in args.attacks:
        if attack not in ATTACKS:
            parser.error(f"unknown attack {attack!r}; choose from {ATTACKS}")
    args.retrain = [a for a in args.retrain.split(",") if a]
    return args


def log(message):
    print(message, flush=True)


def load_json(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"stages": {}, "commands": []}


def save_json(path, results):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)


def poisoned_training_set(attack, seed, x_train, y_train, results=None):
    import keras_poison as kp

    if attack == "clean":
        return x_train, y_train, np.zeros(len(y_train), bool)
    if attack == "random_flip":
        poison = kp.RandomFlip(rate=RATE, num_classes=NUM_CLASSES, seed=seed)
    elif attack == "targeted_flip":
        # The clean model of this run when it has one, else the defences benchmark's.
        clean_cell = (results or {}).get("stages", {}).get(f"clean|{seed}|trained")
        if clean_cell is None or "confusion_matrix" not in clean_cell:
            clean_cell = load_json(DEFENCES_RESULTS).get("cells", {}).get(f"clean|none|{seed}")
        if clean_cell is None:
            raise SystemExit(f"targeted_flip needs clean|none|{seed} in {DEFENCES_RESULTS}")
        poison = kp.TargetedFlip.from_confusion_matrix(
            np.asarray(clean_cell["confusion_matrix"]), rate=RATE, seed=seed
        )
    else:
        poison = kp.ClassPatternNoise(NUM_CLASSES, epsilon=16 / 255, seed=seed)
    return poison.poison(x_train, y_train)


def build_model(seed, input_shape, name="vgg_like"):
    import keras

    import keras_poison as kp

    keras.utils.set_random_seed(seed)
    builder = getattr(kp.models, name)
    return builder(input_shape=input_shape, num_classes=NUM_CLASSES, seed=seed)


CACHE = os.path.join(REPO_ROOT, "benchmarks", "results", "cache")


def cache_prefix(args):
    return f"detectors_{args.dataset}_{args.model}_seed{args.seed}_ep{args.epochs}"


def train_and_test(x, y, data, args, label, cache_name=None):
    """Trains vgg_like on `(x, y)`; returns the model and its test figures.

    With `cache_name`, the trained weights are kept in the (git-ignored)
    cache and re-used by later runs with the same settings.
    """
    import keras_poison as kp

    (_, _), (x_test, y_test) = data
    model = build_model(args.seed, x.shape[1:], args.model)
    cache = cache_name and os.path.join(CACHE, f"{cache_prefix(args)}_{cache_name}.weights.h5")
    start = time.perf_counter()
    if cache and os.path.exists(cache):
        model.load_weights(cache)
        history = None
    else:
        history = model.fit(
            x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0,
            validation_data=(x_test, y_test),
        )
        if cache:
            os.makedirs(CACHE, exist_ok=True)
            model.save_weights(cache)
    seconds = time.perf_counter() - start
    y_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=-1)
    figures = {
        "test_accuracy": kp.accuracy(y_test, y_pred),
        "macro_f1": kp.macro_f1(y_test, y_pred, num_classes=NUM_CLASSES),
        "confusion_matrix": kp.confusion_matrix(y_test, y_pred, num_classes=NUM_CLASSES).tolist(),
        "train_accuracy_last_epoch": (
            float(history.history["accuracy"][-1]) if history else None
        ),
        "train_examples": int(len(y)),
        "train_seconds": seconds,
    }
    log(f"  {label}: test accuracy {figures['test_accuracy']:.4f} ({seconds:.0f} s)")
    return model, figures


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def scored(report, mask, seconds, extra=None):
    metrics = report.evaluate(mask).as_dict()
    metrics["seconds"] = seconds
    metrics.update(extra or {})
    return metrics


def run_attack(attack, data, results, args):
    import keras

    import keras_poison as kp

    (x_train, y_train), _ = data
    stages = results["stages"]
    prefix = f"{attack}|{args.seed}"
    x_p, y_p, mask = poisoned_training_set(attack, args.seed, x_train, y_train, results)
    log(f"\n=== {attack} (seed {args.seed}): {int(mask.sum())} of {len(mask)} examples poisoned ===")

    model, figures = train_and_test(
        x_p, y_p, data, args, "trained on the poisoned set", cache_name=attack
    )
    if not args.detect_only:
        stages[f"{prefix}|trained"] = figures
    detections = {}
    reports = {}

    def record(name, report, seconds, extra=None):
        detections[name] = scored(report, mask, seconds, extra)
        m = detections[name]
        log(
            f"  {name:<24} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} "
            f"AUROC {m['auroc']:.3f} flagged {m['num_flagged']} ({seconds:.1f} s)"
        )
        return report

    features, feature_seconds = timed(lambda: kp.defences.detectors.extract_features(model, x_p))
    detections["feature_pass"] = {"seconds": feature_seconds}
    for name, detector in [
        ("spectral_signature", kp.SpectralSignatureDetector(expected_poison_rate=RATE)),
        ("activation_clustering", kp.ActivationClusteringDetector(seed=args.seed)),
        ("activation_clustering_pca", kp.ActivationClusteringDetector(reduction="pca", seed=args.seed)),
        ("knn", kp.KNNDetector(k=args.knn_k)),
    ]:
        report, seconds = timed(lambda: detector.detect(None, y_p, features=features))
        record(name, report, seconds + feature_seconds)
        reports[name] = report

    if args.art:
        from art_detectors import art_detect

        art = art_detect(model, x_p, y_p, NUM_CLASSES, expected_poison_rate=RATE)
        for name, outcome in art.items():
            flagged = np.asarray(outcome["flagged"], bool)
            report = kp.DetectionReport(flagged.astype(float), flagged, detector=f"art_{name}")
            record(f"art_{name}", report, outcome["seconds"], {"settings": outcome.get("settings")})

    if attack == "class_pattern" or attack == "clean":
        detector = kp.ClassPatternDetector(NUM_CLASSES)
        report, seconds = timed(lambda: detector.detect(x_p, y_p))
        record("class_pattern", report, seconds, {
            "flagged_classes": report.details["flagged_classes"],
            "signal_to_noise": report.details["signal_to_noise"],
        })
    keras.backend.clear_session(free_memory=True)

    if args.detect_only:
        # Keep what the earlier full run measured for the label detector.
        previous = stages.get(f"{prefix}|detections", {})
        if "label_issues" in previous:
            detections["label_issues"] = previous["label_issues"]
        stages[f"{prefix}|detections"] = detections
        save_json(args.out, results)
        return
    if attack in LABEL_ATTACKS:
        detector = kp.LabelIssueDetector(
            build_model=lambda: build_model(args.seed, x_p.shape[1:], args.model),
            num_folds=args.folds, epochs=args.fold_epochs, batch_size=args.batch_size,
            seed=args.seed,
        )
        cache = os.path.join(
            CACHE, f"{cache_prefix(args)}_{attack}_oos_f{args.folds}e{args.fold_epochs}.npy"
        )
        if os.path.exists(cache):
            probabilities, fold_seconds = np.load(cache), None
        else:
            probabilities, fold_seconds = timed(
                lambda: detector.out_of_sample_probabilities(x_p, y_p)
            )
            os.makedirs(CACHE, exist_ok=True)
            np.save(cache, probabilities)
        report, seconds = timed(lambda: detector.detect(x_p, y_p, pred_probs=probabilities))
        record("label_issues", report, (fold_seconds or 0) + seconds, {"kfold_seconds": fold_seconds})
        agreed = record("consensus_label_issues_knn", kp.defences.detectors.consensus(report, reports["knn"]), 0.0)
        for name, candidate in (("label_issues", report), ("knn", reports["knn"]), ("consensus_label_issues_knn", agreed)):
            if mask.any():
                detections[name]["suggested_label_correct_on_flagged_poisoned"] = float(
                    np.mean(candidate.suggested_labels[mask & candidate.flagged] == y_train[mask & candidate.flagged])
                ) if np.any(mask & candidate.flagged) else None
        stages[f"{prefix}|detections"] = detections
        save_json(args.out, results)
        policies = {"relabel": (report, "relabel"), "drop": (report, "drop"), "consensus": (agreed, "relabel")}
        for policy in args.retrain:
            chosen, action = policies[policy]
            x_s, y_s = kp.Sanitize(chosen, action=action).apply(x_p, y_p)
            _, retrained = train_and_test(x_s, y_s, data, args, f"sanitized ({policy}) and retrained")
            true_labels = y_train[~chosen.flagged] if action == "drop" else y_train
            retrained["labels_still_wrong"] = int(np.sum(y_s != true_labels))
            stages[f"{prefix}|retrained_{policy}"] = retrained
            save_json(args.out, results)
            keras.backend.clear_session(free_memory=True)
    else:
        stages[f"{prefix}|detections"] = detections
    stages[f"{prefix}|done"] = True
    save_json(args.out, results)


# ---------------------------------------------------------------- report --


def fmt(value, digits=2):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def write_markdown(path, results):
    stages = results["stages"]
    seeds = sorted({key.split("|")[1] for key in stages if key.endswith("|done")})
    lines = [f"# Detectors on {results.get('meta', {}).get('dataset', 'the CIFAR-10 subset')}", ""]
    meta = results.get("meta", {})
    if meta:
        lines += [
            f"{meta.get('date_utc')} · {meta.get('cpu_model')} ({meta.get('nproc')} cores) · "
            f"TF {meta.get('tensorflow')} · Keras {meta.get('keras')} · {meta.get('epochs')} epochs · "
            f"LabelIssueDetector {meta.get('folds')} folds × {meta.get('fold_epochs')} epochs · k-NN k={meta.get('knn_k')}",
            "",
        ]
    for seed in seeds:
        lines += [f"## Seed {seed}: detection against the ground-truth mask", ""]
        lines += ["| attack | detector | precision | recall | F1 | AUROC | flagged | poisoned | seconds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for attack in ATTACKS:
            detections = stages.get(f"{attack}|{seed}|detections")
            if not detections:
                continue
            for name, m in detections.items():
                if name == "feature_pass":
                    continue
                lines.append(
                    f"| {ATTACK_LABELS[attack]} | {name} | {fmt(m['precision'])} | {fmt(m['recall'])} | "
                    f"{fmt(m['f1'])} | {fmt(m['auroc'])} | {m['num_flagged']} | {m['num_poisoned']} | "
                    f"{m['seconds']:.1f} |"
                )
        lines += ["", f"## Seed {seed}: sanitize with LabelIssueDetector, retrain", ""]
        lines += ["| attack | attacked | relabel | drop | consensus relabel | recovery relabel | recovery drop | recovery consensus |",
                  "|---|---|---|---|---|---|---|---|"]
        clean = stages.get(f"clean|{seed}|trained", {}).get("test_accuracy")
        for attack in LABEL_ATTACKS:
            attacked = stages.get(f"{attack}|{seed}|trained", {}).get("test_accuracy")
            if attacked is None:
                continue
            row = [ATTACK_LABELS[attack], fmt(attacked, 3)]
            recoveries = []
            for action in ("relabel", "drop", "consensus"):
                value = stages.get(f"{attack}|{seed}|retrained_{action}", {}).get("test_accuracy")
                row.append(fmt(value, 3))
                if attack == "clean" and value is not None:
                    recoveries.append(f"cost {100 * (clean - value):+.1f} pts")
                elif value is not None and clean is not None and clean != attacked:
                    recoveries.append(fmt((value - attacked) / (clean - attacked)))
                else:
                    recoveries.append("–")
            lines.append("| " + " | ".join(row + recoveries) + " |")
        lines.append("")
    lines += ["Commands:", ""] + [f"    {c}" for c in results.get("commands", [])] + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    results = load_json(args.out)
    for other in filter(None, args.merge.split(",")):
        other_results = load_json(other)
        results["stages"].update(other_results["stages"])
        results["commands"] += [c for c in other_results["commands"] if c not in results["commands"]]
        results.setdefault("meta", other_results.get("meta"))
    if not args.report_only:
        import keras
        import tensorflow as tf

        from keras_poison import datasets

        path = args.data if args.dataset == "cifar10" else None
        (x_train, y_train), (x_test, y_test) = datasets.load(args.dataset, path=path)
        data = ((x_train.astype("float32") / 255.0, y_train), (x_test.astype("float32") / 255.0, y_test))
        results["commands"].append(" ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv))
        info = machine_info()
        results["meta"] = {
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu_model": info.get("cpu_model"),
            "nproc": info.get("nproc"),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "epochs": args.epochs,
            "folds": args.folds,
            "fold_epochs": args.fold_epochs,
            "knn_k": args.knn_k,
            "dataset": args.dataset,
            "model": args.model,
        }
        for attack in args.attacks:
            if results["stages"].get(f"{attack}|{args.seed}|done") and not args.detect_only:
                log(f"skip {attack} (already measured)")
                continue
            run_attack(attack, data, results, args)
            write_markdown(os.path.splitext(args.out)[0] + ".md", results)
    save_json(args.out, results)
    write_markdown(os.path.splitext(args.out)[0] + ".md", results)


if __name__ == "__main__":
    main()
