"""`keras-poison demo`: the library's story in about a minute.

On data that ships with the install (5,000 MNIST digits by default), with
the same small model throughout, the demo shows for three attacks

1. the **damage**: test accuracy of a model trained on the poisoned set
   against the clean model's;
2. the **detection**: what a detector flags, scored against the attack's
   ground-truth mask (precision, recall, F1);
3. the **recovery**: what a defence wins back, as a share of the damage,
   `(defended - attacked) / (clean - attacked)`.

The attacks are chosen where their effect is clear on digits:

* `RandomFlip(rate=0.4)` (seed 000, §3.1): below ~20% random flips barely
  bite a CNN trained briefly (it fits the consistent labels first), so the
  demo flips 40%; the detectors find almost every flip;
* `TargetedFlip.from_confusion_matrix(rate=0.3)` (seed 000, §3.1): flipping
  between the pairs the clean model confuses most costs more than random
  flips at a lower rate; deep k-NN (`KNNDetector`) finds the flips and
  `Sanitize` + retraining wins most of it back;
* `SupplanterPoison(rate=0.3)` (COEG, the class-oriented paper's
  Algorithm 1) in the paper's protocol: the clean model is fine-tuned on a
  1,000-image set of which 30% are crafted poisons labelled "0", and most
  test digits become zeros; `PoisonMonitor(action="stop")` on a small
  trusted set stops the fine-tuning at its first alarm and restores the last
  good weights.

Area under the margin (`MarginRecorder`, recorded during the poisoned
training run itself) is scored beside deep k-NN. The demo prints one table,
writes `results.json` and `demo.png` to `out`, and ends with commands to try
next.
"""

import json
import os
import sys
import time
import warnings

# The model each packaged data set is shown with.
DATASET_MODELS = {"mnist5k": "lenet5", "digits": "vgg_like", "cifar10": "vgg_like"}
RANDOM_FLIP_RATE = 0.4
TARGETED_FLIP_RATE = 0.3
COEG_RATE = 0.3
COEG_EPSILON = 0.3  # on [0, 1] images, as the paper's MNIST setting
FINETUNE_SET = 1000  # the paper's fine-tuning set size
TRUSTED_SET = 500  # clean images the defender holds back for PoisonMonitor
FINETUNE_LR = 1e-4
# COEG's effect peaks early in fine-tuning, then the model fits the poisons.
FINETUNE_EPOCHS = 8
FINETUNE_BATCH = 128
SUPPLANTER = 0

NEXT_STEPS = """Try next:
  keras-poison run --list                          # every experiment of both seeds
  keras-poison run baseline random_flip targeted_flip random_flip_sanitized \\
      --dataset mnist5k --epochs 10 --seeds 3 --out runs/first   # mean ± std, plots
  keras-poison run coeg_set coeg_set_fl coes --dataset mnist5k --out runs/coeg
Guides: docs/guides/ (label flipping, class-oriented attacks, detection, defences, pipelines)."""


def _progress(phase, epochs, verbose):
    """A Keras callback showing one phase's progress: a bar over its epochs
    on a terminal, one line when it ends otherwise (logs, CI)."""
    import keras  # here, so importing this module stays light

    interactive = sys.stdout.isatty()

    class PhaseProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()
            if verbose and interactive:
                print(f"  {phase}", flush=True)
                self.bar = keras.utils.Progbar(
                    epochs, width=20, unit_name="epoch", stateful_metrics=["loss", "accuracy"]
                )

        def on_epoch_end(self, epoch, logs=None):
            self.epochs_run = epoch + 1
            self.logs = {k: logs[k] for k in ("loss", "accuracy") if logs and k in logs}
            if verbose and interactive:
                self.bar.update(epoch + 1, list(self.logs.items()))

        def on_train_end(self, logs=None):
            if verbose and not interactive:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in getattr(self, "logs", {}).items())
                print(
                    f"  {phase}: {getattr(self, 'epochs_run', 0)} epochs, {shown} "
                    f"({time.perf_counter() - self.started:.0f}s)",
                    flush=True,
                )

    return PhaseProgress()


def run(
    dataset="mnist5k",
    data=None,
    epochs=15,
    batch_size=64,
    seed=0,
    out="keras-poison-demo",
    verbose=1,
    plot=True,
    say=print,
):
    """Runs the demo and returns its results (also written to `out`).

    Args:
        dataset: `"mnist5k"`, `"digits"` or `"cifar10"` (needs `data`).
        data: path to a local `.npz` with `x_train`, `y_train`, `x_test`,
            `y_test`, or `None` for the packaged data.
        epochs: int >= 1, training epochs of every model trained from
            scratch; the COEG fine-tuning runs `min(epochs, 8)`.
        batch_size: int >= 1, the training batch size.
        seed: int, the seed of every attack, model and shuffle.
        out: directory for `results.json` and `demo.png` (created).
        verbose: `0` (table only), `1` (a progress bar per phase) or `2`
            (also Keras' own per-epoch lines).
        plot: bool, whether to write `demo.png`.
        say: function that prints one line.

    Returns:
        A dict with `rows` (one per attack: damage, detection, recovery)
        and the settings.

    Example (what `keras-poison demo --epochs 2` runs; about 20 s):

        from keras_poison import demo
        result = demo.run(epochs=2, out="demo-out", verbose=0)
        [(row["attack"], row["recovery"]) for row in result["rows"]]
    """
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_poison as kp
    from keras_poison import datasets
    from keras_poison import metrics
    from keras_poison import models

    started = time.perf_counter()
    # Predicting with several models retraces Keras' predict function; the
    # notice says nothing a demo user can act on.
    tf.get_logger().setLevel("ERROR")
    (x_train, y_train), (x_test, y_test) = datasets.load(dataset, path=data)
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    num_classes = int(max(y_train.max(), y_test.max()) + 1)
    build = getattr(models, DATASET_MODELS[dataset])
    progress_verbose = 1 if verbose else 0
    fit_verbose = 2 if verbose == 2 else 0
    say(
        f"keras-poison demo: {dataset} ({len(x_train)} train / {len(x_test)} test "
        f"images), {build.__name__}, {epochs} epochs, seed {seed}"
    )

    def test_accuracy(model):
        return metrics.accuracy(y_test, predict(model, x_test))

    def predict(model, x):
        return np.argmax(model.predict(x, batch_size=512, verbose=0), axis=1)

    def train(phase, x, y, callbacks=()):
        keras.utils.set_random_seed(seed)
        model = build(input_shape=x.shape[1:], num_classes=num_classes, seed=seed)
        stream = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed)
            .batch(batch_size)
        )
        progress = _progress(phase, epochs, progress_verbose)
        model.fit(stream, epochs=epochs, verbose=fit_verbose, callbacks=[progress, *callbacks])
        return model

    # 1. The clean model: the reference, the targeted pairs, the COEG target.
    clean_model = train("clean training", x_train, y_train)
    clean = test_accuracy(clean_model)
    confusion = metrics.confusion_matrix(y_test, predict(clean_model, x_test), num_classes=num_classes)
    rows = []

    # 2. Label flips: damage, detection (AUM and deep k-NN), Sanitize + retrain.
    flips = [
        (f"RandomFlip {RANDOM_FLIP_RATE:.0%}", kp.RandomFlip(RANDOM_FLIP_RATE, num_classes, seed=seed)),
        (
            f"TargetedFlip {TARGETED_FLIP_RATE:.0%}",
            kp.TargetedFlip.from_confusion_matrix(confusion, rate=TARGETED_FLIP_RATE, seed=seed),
        ),
    ]
    for name, attack in flips:
        x_p, y_p, mask = attack.poison(x_train, y_train)
        margins = kp.MarginRecorder(x_p, y_p)
        attacked_model = train(f"{name}: training on the poisoned set", x_p, y_p, [margins])
        attacked = test_accuracy(attacked_model)
        knn = kp.KNNDetector(attacked_model, k=50).detect(x_p, y_p)
        aum = margins.detector_report(seed=seed)
        x_s, y_s = kp.Sanitize(knn, action="drop").apply(x_p, y_p)
        defended = test_accuracy(train(f"{name}: retraining on the sanitized set", x_s, y_s))
        rows.append(
            {
                "attack": name,
                "poisoned": float(mask.mean()),
                "clean_accuracy": clean,
                "attacked_accuracy": attacked,
                "detection": {
                    "KNNDetector": _scores(knn.evaluate(mask)),
                    "AUM (MarginRecorder)": _scores(aum.evaluate(mask)),
                },
                "defence": "Sanitize(KNNDetector report, drop) + retrain",
                "defended_accuracy": defended,
            }
        )
    pairs = flips[1][1].mapping

    # 3. COEG in the paper's protocol: fine-tune the clean model on a small set.
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_train))
    finetune_size = min(FINETUNE_SET, len(y_train) // 2)
    trusted_size = min(TRUSTED_SET, len(y_train) - finetune_size)
    finetune_index = np.sort(order[:finetune_size])
    trusted_index = np.sort(order[finetune_size : finetune_size + trusted_size])
    x_ft, y_ft = x_train[finetune_index], y_train[finetune_index]
    coeg = kp.SupplanterPoison(
        clean_model, supplanter=SUPPLANTER, epsilon=COEG_EPSILON, steps=10, rate=COEG_RATE,
        value_range=(0.0, 1.0), seed=seed,
    )
    x_p, y_p, mask = coeg.poison(x_ft, y_ft)
    before = predict(clean_model, x_test)
    clean_weights = clean_model.get_weights()

    def finetune(phase, callbacks=()):
        keras.utils.set_random_seed(seed)
        model = keras.models.clone_model(clean_model)
        model.set_weights(clean_weights)
        model.compile(
            optimizer=keras.optimizers.Adam(FINETUNE_LR),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        stream = tf.data.Dataset.from_tensor_slices((x_p, y_p)).shuffle(len(y_p), seed=seed)
        finetune_epochs = min(epochs, FINETUNE_EPOCHS)
        progress = _progress(phase, finetune_epochs, progress_verbose)
        model.fit(
            stream.batch(FINETUNE_BATCH), epochs=finetune_epochs, verbose=fit_verbose,
            callbacks=[progress, *callbacks],
        )
        after = predict(model, x_test)
        return metrics.accuracy(y_test, after), metrics.ctt_rate(y_test, before, after, SUPPLANTER).overall

    name = f"SupplanterPoison (COEG) {COEG_RATE:.0%} of a {finetune_size}-image fine-tuning set"
    attacked, attacked_ctt = finetune("COEG: fine-tuning on the poisoned set")
    monitor = kp.PoisonMonitor(
        x_train[trusted_index], y_train[trusted_index], num_classes=num_classes, action="stop"
    )
    with warnings.catch_warnings():
        # The monitor warns on its alarm; the table reports it instead.
        warnings.filterwarnings("ignore", message="PoisonMonitor")
        defended, defended_ctt = finetune("COEG: the same, with PoisonMonitor(action='stop')", [monitor])
    first_alarm = monitor.alarms[0] if monitor.alarms else None
    rows.append(
        {
            "attack": name,
            "poisoned": float(mask.mean()),
            "clean_accuracy": clean,
            "attacked_accuracy": attacked,
            "attacked_ctt": attacked_ctt,
            "detection": {
                "PoisonMonitor": {
                    "watched": monitor.armed_epoch is not None,
                    "first_alarm_epoch": None if first_alarm is None else first_alarm["epoch"] + 1,
                    "signature": None if first_alarm is None else first_alarm["kind"],
                    "class": None if first_alarm is None else first_alarm["class"],
                }
            },
            "defence": "PoisonMonitor(action='stop'): stop at the alarm, restore the last good weights",
            "defended_accuracy": defended,
            "defended_ctt": defended_ctt,
        }
    )
    for row in rows:
        row["damage"] = row["clean_accuracy"] - row["attacked_accuracy"]
        row["recovery"] = _recovery(row)

    seconds = time.perf_counter() - started
    result = {
        "dataset": dataset,
        "model": build.__name__,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "targeted_pairs": {int(k): int(v) for k, v in pairs.items()},
        "rows": rows,
        "seconds": seconds,
    }
    _print_table(result, say)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    if plot:
        _plot(result, os.path.join(out, "demo.png"))
    say(f"\nWrote {os.path.join(out, 'results.json')}" + (f" and {os.path.join(out, 'demo.png')}" if plot else "") + f". Done in {seconds:.0f}s.\n")
    say(NEXT_STEPS)
    return result


def _scores(detection):
    return {
        "precision": float(detection.precision),
        "recall": float(detection.recall),
        "f1": float(detection.f1),
        "num_flagged": int(detection.num_flagged),
    }


def _recovery(row):
    """Share of the damage won back; `None` when there was under a point to win."""
    if row["damage"] < 0.01:
        return None
    return (row["defended_accuracy"] - row["attacked_accuracy"]) / row["damage"]


def _detection_text(detection):
    parts = []
    for name, scores in detection.items():
        if "f1" in scores:
            parts.append(
                f"{name} P {scores['precision']:.2f} R {scores['recall']:.2f} F1 {scores['f1']:.2f}"
            )
        elif not scores["watched"]:
            # The clean model was too weak to count as trained (e.g. few --epochs).
            parts.append(f"{name}: not watched (the model to fine-tune is not trained enough)")
        elif scores["first_alarm_epoch"] is None:
            parts.append(f"{name}: no alarm")
        else:
            kind = {"share_surge": "share surge", "accuracy_collapse": "accuracy collapse"}
            parts.append(
                f"{name}: alarm at epoch {scores['first_alarm_epoch']} "
                f"({kind[scores['signature']]}, class {scores['class']})"
            )
    return "; ".join(parts)


def _print_table(result, say):
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    say("")
    say("| attack | poisoned | clean → attacked accuracy | damage | detection (vs the true mask) | defence | defended accuracy | recovery |")
    say("|---|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        attacked = pct(row["attacked_accuracy"])
        defended = pct(row["defended_accuracy"])
        if "attacked_ctt" in row:
            attacked += f" (CTT {100 * row['attacked_ctt']:+.0f})"
            defended += f" (CTT {100 * row['defended_ctt']:+.0f})"
        recovery = "— (under a point to win)" if row["recovery"] is None else f"{row['recovery']:.2f}"
        say(
            f"| {row['attack']} | {pct(row['poisoned'])} | {pct(row['clean_accuracy'])} → {attacked} | "
            f"{100 * row['damage']:.1f} pts | {_detection_text(row['detection'])} | "
            f"{row['defence']} | {defended} | {recovery} |"
        )
    say("")
    say(f"Targeted pairs (the clean model's most-confused classes): {result['targeted_pairs']}")
    say(
        "Why these attacks: at these rates label noise visibly costs accuracy (below ~20% "
        "a CNN trained briefly barely notices random flips: it fits the consistent labels "
        "first; docs/benchmarks.md §8). Targeted flips switch the pairs the clean model "
        "confuses most. COEG crafts poisons against the clean model and is measured in "
        "its paper's protocol, fine-tuning that model on a small set; CTT is the share "
        "of test images it moved to the supplanter class (points)."
    )
    say("Recovery = (defended - attacked) / (clean - attacked).")


def _plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result["rows"]
    labels = [row["attack"].replace(" of a ", "\nof a ") for row in rows]
    positions = np.arange(len(rows))
    width = 0.27
    figure, axis = plt.subplots(figsize=(10, 4.8))
    for offset, key, name, colour in (
        (-width, "clean_accuracy", "clean", "#4c72b0"),
        (0.0, "attacked_accuracy", "attacked", "#c44e52"),
        (width, "defended_accuracy", "detected + defended", "#55a868"),
    ):
        values = [100 * row[key] for row in rows]
        axis.bar(positions + offset, values, width, label=name, color=colour)
    for x, row in zip(positions, rows):
        detection = row["detection"]
        first = next(iter(detection.values()))
        if "f1" in first:
            note = f"F1 {first['f1']:.2f}"
        elif not first["watched"]:
            note = "not watched"
        elif first["first_alarm_epoch"] is None:
            note = "no alarm"
        else:
            note = f"alarm ep {first['first_alarm_epoch']}"

        recovery = "—" if row["recovery"] is None else f"{row['recovery']:.2f}"
        axis.text(x, 101, f"{note}, recovery {recovery}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(positions, labels, fontsize=8)
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(0, 118)
    axis.set_title(
        f"keras-poison demo: {result['dataset']}, {result['model']}, {result['epochs']} epochs, seed {result['seed']}"
    )
    axis.legend(loc="upper left", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

