"""Attack × defence table on the real CIFAR-10 subset (issue 4, §3).

Every cell trains a fresh VGG-like CNN (`models.vgg_like`, Adam 1e-3, batch
64) on the training split after an attack, with one defence, and reports the
accuracy on the clean test split at the end of training (after any weights
an early-stopping callback restored). Cells of one seed start from identical
weights (`keras.utils.set_random_seed(seed)`, `vgg_like(seed=seed)`).

Attacks (test split always clean):

* `clean`: no attack.
* `random_flip`: `RandomFlip(rate=0.2)`.
* `targeted_flip`: `TargetedFlip.from_confusion_matrix(cm, rate=0.2)` with `cm`
  the confusion matrix of the same seed's clean, undefended model (run first).
* `class_pattern`: `ClassPatternNoise(epsilon=--pattern-epsilon,
  bias_ratio=--pattern-bias)` on the [0, 1] float images.
* `smooth_pattern`: `SmoothClassPattern(epsilon=--pattern-epsilon)`, the
  pattern written against `class_pattern_defences()` (issue 20).
* `signed_smooth_pattern`: `SmoothClassPattern(epsilon=--pattern-epsilon,
  random_sign=True)`, written against `ClassPatternSwap` (the class mean holds
  none of it).
* `class_convolution`: `ClassConvolution(blur=0.3)` (CUDA, Sadasivan et al.).
* `one_pixel`: `OnePixelShortcut.search(x_train, y_train)` (OPS, Wu et al.).
* `separable_noise`: `SeparableNoise(epsilon=--separable-epsilon,
  patch_size=8)` (Yu et al.).

Defences (see `DEFENCES`): none; the seed's three as written
(`seed_defences()`) and with early stopping watching `val_accuracy`; each
noise-robust loss; class-pattern removal; strong generic augmentation
(grayscale, JPEG re-encoding); and combinations.

The recovery of a defence against an attack is
`(defended − attacked) / (clean − attacked)`, with `attacked` the attack's
undefended cell and `clean` the clean undefended cell of the same seed.

Usage (from the repository root; cells are saved as they finish and skipped
when already in `--out`, so a run can be resumed):

    PYTHONPATH=. python benchmarks/defences_cifar.py --seeds 0 \
        --cells clean:none,random_flip:none,random_flip:sce
    PYTHONPATH=. python benchmarks/defences_cifar.py --report-only
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
DEFAULT_OUT = os.path.join("benchmarks", "results", "defences_cifar.json")
NUM_CLASSES = 10
RATE = 0.2

ATTACKS = (
    "clean",
    "random_flip",
    "targeted_flip",
    "class_pattern",
    "smooth_pattern",
    "signed_smooth_pattern",
    "class_convolution",
    "one_pixel",
    "separable_noise",
)
ATTACK_LABELS = {
    "clean": "clean",
    "random_flip": "random flip 20%",
    "targeted_flip": "targeted flip 20%",
    "class_pattern": "class-pattern noise",
    "smooth_pattern": "smooth class pattern (adaptive)",
    "signed_smooth_pattern": "smooth class pattern, random sign per image (adaptive to the swap)",
    "class_convolution": "CUDA class convolution",
    "one_pixel": "one-pixel shortcut",
    "separable_noise": "linearly separable noise",
}
# name -> (label, what it is made of)
DEFENCES = {
    "none": ("none", "cross-entropy"),
    "seed3": ("seed's three", "`seed_defences()`: augmentation + smoothing 0.1 + EarlyStopping(val_loss, 5)"),
    "seed3_acc": ("seed's three, ES on val_accuracy", "`seed_defences(monitor='val_accuracy')`"),
    "aug": ("augmentation", "`ImageAugmentation()`"),
    "smooth": ("label smoothing 0.1", "`LabelSmoothingCrossentropy(0.1)`"),
    "gce": ("GCE q=0.7", "`GeneralizedCrossentropy(q=0.7)`"),
    "sce": ("SCE α=0.1 β=1", "`SymmetricCrossentropy(0.1, 1.0)`"),
    "bootstrap": ("bootstrap soft β=0.95", "`BootstrappingCrossentropy(0.95)`"),
    "bootstrap_hard": ("bootstrap hard β=0.8", "`BootstrappingCrossentropy(0.8, mode='hard')`"),
    "removal": ("pattern removal", "`ClassPatternRemoval(10)` fitted on the training set"),
    "grayscale": ("grayscale aug", "`keras.layers.RandomGrayscale(0.5)`"),
    "jpeg": ("JPEG re-encoding", "`tf.image.random_jpeg_quality(30, 70)` per training image"),
    "aug_gce": ("augmentation + GCE", "`ImageAugmentation()` + GCE q=0.7"),
    "aug_sce": ("augmentation + SCE", "`ImageAugmentation()` + SCE"),
    "removal_aug": ("pattern removal + augmentation", "removal + `ImageAugmentation()`"),
    "mixup": ("mixup α=0.4", "`keras.layers.MixUp(alpha=0.4)` on one-hot training batches (Zhang et al. 2018)"),
    "aug_mixup": ("augmentation + mixup", "`ImageAugmentation()` + `keras.layers.MixUp(alpha=0.4)`"),
    "shift": ("augmentation + shifts", "`ImageAugmentation(translation=0.125)`: the seed's three plus random shifts of up to 4 pixels"),
    "shift_gce": ("augmentation + shifts + GCE", "`ImageAugmentation(translation=0.125)` + GCE q=0.7"),
    "shift_sce": ("augmentation + shifts + SCE", "`ImageAugmentation(translation=0.125)` + SCE α=0.1 β=1"),
    "centre": ("colour centering", "`ColourCentering()` layer (train and test)"),
    "removal_centre": ("pattern removal + colour centering", "`ClassPatternRemoval(10)` + `ColourCentering()`"),
    "squeeze": ("shortcut squeezing", "`ShortcutSqueezing()`: grayscale (train and test) + JPEG quality 10 (training)"),
    "squeeze_aug": ("shortcut squeezing + augmentation", "`ImageAugmentation()` + `ShortcutSqueezing()`"),
    "sharpen_ff": ("sharpening + frequency filtering", "`SharpeningFrequencyFilter()`: random sharpening kernels + DCT low-pass 30% (training only; Kim & Sandoval-Segura 2024)"),
    "sharpen_aug": ("sharpening + augmentation", "`SharpeningFrequencyFilter(keep_frequencies=None)` (random sharpening kernels only, the authors' RSK) + `ImageAugmentation()`"),
    "sharpen_ff_aug": ("sharpening + frequency filtering + augmentation", "`SharpeningFrequencyFilter()` + `ImageAugmentation()`"),
    "randaugment": ("RandAugment", "`keras.layers.RandAugment(value_range=(0, 1))` (Cubuk et al. 2020), training only"),
    "removal_centre_aug": (
        "pattern removal + colour centering + augmentation",
        "`ClassPatternRemoval(10)` + `ImageAugmentation()` + `ColourCentering()`",
    ),
    "mean_swap_centre_aug": (
        "class-mean swap + colour centering + augmentation",
        "each training image's class mean (`ClassPatternRemoval(10, frequencies=\"all\").patterns`) "
        "replaced by that of a class drawn at random per image and epoch, + `ImageAugmentation()` "
        "+ `ColourCentering()`",
    ),
    "swap_centre_aug": (
        "class-pattern swap + colour centering + augmentation",
        "`ClassPatternSwap(10, seed=seed)` on the training stream (each image's class mean "
        "out, a random class's in, anew per image and epoch) + `ImageAugmentation()` "
        "+ `ColourCentering()`",
    ),
    "mean_removal_centre_aug": (
        "class-mean removal + colour centering + augmentation",
        "`ClassPatternRemoval(10, frequencies=\"all\")` (each class's whole mean image less the "
        "average class mean) + `ImageAugmentation()` + `ColourCentering()`",
    ),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 .npz file")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument(
        "--cells",
        default="",
        help="comma-separated attack:defence cells, run in order (the clean:none "
        "cell of each seed runs first when a targeted flip needs it)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pattern-epsilon", type=float, default=16 / 255)
    parser.add_argument("--pattern-bias", type=float, default=0.5)
    parser.add_argument("--separable-epsilon", type=float, default=6 / 255)
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--merge",
        default="",
        help="comma-separated JSON files of other runs (e.g. run in parallel with "
        "another --out) whose cells and commands are added to --out",
    )
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    cells = []
    for item in args.cells.split(","):
        if not item.strip():
            continue
        attack, _, defence = item.strip().partition(":")
        if attack not in ATTACKS or defence not in DEFENCES:
            parser.error(f"unknown cell {item!r}; attacks {ATTACKS}, defences {list(DEFENCES)}")
        cells.append((attack, defence))
    args.cells = cells
    return args


def log(message):
    print(message, flush=True)


def load_report(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"cells": {}, "commands": []}


def save_report(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)


def cell_key(attack, defence, seed):
    return f"{attack}|{defence}|{seed}"


def attacked_data(attack, seed, x_train, y_train, report, args):
    """The training set after `attack`, and the attack's ground-truth mask."""
    import keras_poison as kp

    if attack == "clean":
        return x_train, y_train, np.zeros(len(y_train), bool), {}
    if attack == "random_flip":
        poison = kp.RandomFlip(rate=RATE, num_classes=NUM_CLASSES, seed=seed)
    elif attack == "targeted_flip":
        clean = report["cells"].get(cell_key("clean", "none", seed))
        if clean is None:
            raise RuntimeError("targeted_flip needs the clean:none cell of this seed first")
        cm = np.asarray(clean["confusion_matrix"])
        poison = kp.TargetedFlip.from_confusion_matrix(cm, rate=RATE, seed=seed)
    elif attack == "class_pattern":
        poison = kp.ClassPatternNoise(
            num_classes=NUM_CLASSES,
            epsilon=args.pattern_epsilon,
            bias_ratio=args.pattern_bias,
            seed=seed,
        )
    elif attack == "smooth_pattern":
        poison = kp.SmoothClassPattern(
            num_classes=NUM_CLASSES, epsilon=args.pattern_epsilon, seed=seed
        )
    elif attack == "signed_smooth_pattern":
        poison = kp.SmoothClassPattern(
            num_classes=NUM_CLASSES, epsilon=args.pattern_epsilon, seed=seed, random_sign=True
        )
    elif attack == "class_convolution":
        poison = kp.ClassConvolution(num_classes=NUM_CLASSES, blur=0.3, seed=seed)
    elif attack == "one_pixel":
        poison = kp.OnePixelShortcut.search(x_train, y_train, NUM_CLASSES, seed=seed)
    else:
        poison = kp.SeparableNoise(
            num_classes=NUM_CLASSES, epsilon=args.separable_epsilon, patch_size=8, seed=seed
        )
    x_p, y_p, mask = poison.poison(x_train, y_train)
    return x_p, y_p, mask, poison.get_config()


def build_and_compile(defence, seed, input_shape):
    """The model, its `fit` callbacks and the training-data transform."""
    import keras
    import tensorflow as tf

    import keras_poison as kp

    losses = {
        "none": lambda: keras.losses.SparseCategoricalCrossentropy(),
        "smooth": lambda: kp.LabelSmoothingCrossentropy(0.1),
        "gce": lambda: kp.GeneralizedCrossentropy(q=0.7),
        "sce": lambda: kp.SymmetricCrossentropy(alpha=0.1, beta=1.0),
        "bootstrap": lambda: kp.BootstrappingCrossentropy(beta=0.95),
        "bootstrap_hard": lambda: kp.BootstrappingCrossentropy(beta=0.8, mode="hard"),
        # Mixed one-hot targets: plain cross-entropy on soft labels.
        "mixup": lambda: kp.LabelSmoothingCrossentropy(label_smoothing=0.0),
    }
    loss_name = {
        "aug_gce": "gce", "aug_sce": "sce", "aug_mixup": "mixup",
        "shift_gce": "gce", "shift_sce": "sce",
    }.get(
        defence, defence
    )
    loss = losses.get(loss_name, losses["none"])()
    front = []
    callbacks = []
    image_map = None
    if defence in ("seed3", "seed3_acc"):
        monitor = "val_loss" if defence == "seed3" else "val_accuracy"
        recipe = kp.seed_defences(monitor=monitor, seed=seed)
        front.append(recipe.augmentation)
        loss = recipe.loss
        callbacks = recipe.callbacks
    elif defence in ("aug", "aug_gce", "aug_sce", "removal_aug", "aug_mixup"):
        front.append(kp.ImageAugmentation(seed=seed))
    elif defence in ("shift", "shift_gce", "shift_sce"):
        front.append(kp.ImageAugmentation(translation=0.125, seed=seed))
    elif defence in ("centre", "removal_centre"):
        front.append(kp.ColourCentering())
    elif defence in ("removal_centre_aug", "mean_removal_centre_aug", "mean_swap_centre_aug",
                     "swap_centre_aug"):
        # Centering last, so the model sees centred images at test time too.
        front += [kp.ImageAugmentation(seed=seed), kp.ColourCentering()]
    elif defence == "squeeze":
        front.append(kp.ShortcutSqueezing())
    elif defence == "squeeze_aug":
        front += [kp.ImageAugmentation(seed=seed), kp.ShortcutSqueezing()]
    elif defence == "sharpen_ff":
        front.append(kp.SharpeningFrequencyFilter(seed=seed))
    elif defence == "sharpen_aug":
        front += [kp.SharpeningFrequencyFilter(keep_frequencies=None, seed=seed),
                  kp.ImageAugmentation(seed=seed)]
    elif defence == "sharpen_ff_aug":
        # The authors' order: sharpen, filter, then the usual augmentation.
        front += [kp.SharpeningFrequencyFilter(seed=seed), kp.ImageAugmentation(seed=seed)]
    elif defence == "randaugment":
        front.append(keras.layers.RandAugment(value_range=(0, 1), seed=seed))
    elif defence == "grayscale":
        front.append(keras.layers.RandomGrayscale(factor=0.5, seed=seed))
    elif defence == "jpeg":
        def jpeg(image, label):
            # A new random quality per image and epoch (global seed set above).
            return tf.image.random_jpeg_quality(image, 30, 70), label

        image_map = jpeg

    base = kp.models.vgg_like(
        input_shape=input_shape, num_classes=NUM_CLASSES, compile=False, seed=seed
    )
    if front:
        inputs = keras.Input(input_shape)
        outputs = inputs
        for layer in front:
            outputs = layer(outputs)
        model = keras.Model(inputs, base(outputs))
    else:
        model = base
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"]
    )
    return model, callbacks, image_map


def run_cell(attack, defence, seed, data, report, args):
    import keras
    import tensorflow as tf

    import keras_poison as kp

    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    x_p, y_p, mask, attack_config = attacked_data(attack, seed, x_train, y_train, report, args)
    extra = {}
    if defence in ("removal", "removal_aug", "removal_centre", "removal_centre_aug"):
        removal = kp.ClassPatternRemoval(num_classes=NUM_CLASSES).fit(x_p, y_p)
    elif defence == "mean_removal_centre_aug":
        removal = kp.ClassPatternRemoval(num_classes=NUM_CLASSES, frequencies="all").fit(x_p, y_p)
    if defence in ("removal", "removal_aug", "removal_centre", "removal_centre_aug",
                   "mean_removal_centre_aug"):
        x_p, _ = removal.remove(x_p, y_p)
        extra["removal_weights"] = removal.weights.tolist()
        extra["removal_snr"] = removal.signal_to_noise.tolist()

    keras.utils.set_random_seed(seed)
    model, callbacks, image_map = build_and_compile(defence, seed, x_train.shape[1:])
    if defence == "mean_swap_centre_aug":
        # A random class's mean in place of the image's own, anew per image and
        # epoch: the model cannot use any class-constant additive pattern, and
        # learns to ignore the natural class means it will see at test time.
        swap = kp.ClassPatternRemoval(num_classes=NUM_CLASSES, frequencies="all").fit(x_p, y_p)
        table = tf.constant(swap.patterns)
        extra["removal_weights"] = swap.weights.tolist()

        def image_map(image, label):
            other = tf.random.uniform((), 0, NUM_CLASSES, dtype=tf.int32)
            moved = image - table[tf.cast(label, tf.int32)] + table[other]
            return tf.clip_by_value(moved, 0.0, 1.0), label
    stream_transform = None
    if defence == "swap_centre_aug":
        swap = kp.ClassPatternSwap(num_classes=NUM_CLASSES, seed=seed).fit(x_p, y_p)
        extra["removal_weights"] = swap.weights.tolist()
        stream_transform = swap
    if defence in ("mixup", "aug_mixup"):
        mixup = keras.layers.MixUp(alpha=0.4, seed=seed)

        def mix(images, labels):
            one_hot = tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES)
            mixed = mixup({"images": images, "labels": one_hot})
            return mixed["images"], mixed["labels"]

        train = (
            tf.data.Dataset.from_tensor_slices((x_p, y_p))
            .shuffle(len(y_p), seed=seed, reshuffle_each_iteration=True)
            .batch(args.batch_size)
            .map(mix, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        fit_args = dict(x=train)
        validation = (x_test, np.eye(NUM_CLASSES, dtype="float32")[y_test])
    elif image_map is not None:
        train = (
            tf.data.Dataset.from_tensor_slices((x_p, y_p))
            .shuffle(len(y_p), seed=seed, reshuffle_each_iteration=True)
            .map(image_map, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        fit_args = dict(x=train)
    elif stream_transform is not None:
        train = (
            tf.data.Dataset.from_tensor_slices((x_p, y_p))
            .shuffle(len(y_p), seed=seed, reshuffle_each_iteration=True)
            .apply(stream_transform)
            .batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        fit_args = dict(x=train)
    else:
        fit_args = dict(x=x_p, y=y_p, batch_size=args.batch_size, shuffle=True)
    if defence not in ("mixup", "aug_mixup"):
        validation = (x_test, y_test)
    log(f"\n=== seed {seed} · {attack} × {defence} ===")
    start = time.perf_counter()
    history = model.fit(
        **fit_args,
        epochs=args.epochs,
        validation_data=validation,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.perf_counter() - start
    y_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=-1)
    h = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    record = {
        "attack": attack,
        "defence": defence,
        "seed": seed,
        "test_accuracy": kp.accuracy(y_test, y_pred),
        "macro_f1": kp.macro_f1(y_test, y_pred, num_classes=NUM_CLASSES),
        "confusion_matrix": kp.confusion_matrix(y_test, y_pred, num_classes=NUM_CLASSES).tolist(),
        "epochs_run": len(h["loss"]),
        "val_acc_best": max(h["val_accuracy"]),
        "val_acc_last_epoch": h["val_accuracy"][-1],
        "train_acc_last_epoch": h["accuracy"][-1],
        "poisoned_fraction": float(mask.mean()),
        "attack_config": attack_config,
        "train_seconds": seconds,
        "history": h,
        **extra,
    }
    for callback in callbacks:
        if isinstance(callback, kp.RestoredWeightsCheck):
            record["restored_epoch"] = (
                None if callback.restored_epoch is None else callback.restored_epoch + 1
            )
            record["restored_near_chance"] = callback.near_chance
    log(
        f"--- {attack} × {defence} (seed {seed}): test acc {record['test_accuracy']:.4f} "
        f"(best epoch val {record['val_acc_best']:.4f}, {record['epochs_run']} epochs, "
        f"{seconds:.0f} s)"
    )
    return record


# ---------------------------------------------------------------- report --


def cell_values(report, attack, defence, seeds=None):
    return {
        int(c["seed"]): c["test_accuracy"]
        for c in report["cells"].values()
        if c["attack"] == attack
        and c["defence"] == defence
        and (seeds is None or int(c["seed"]) in seeds)
    }


def recovery(report, attack, defence, seeds=None):
    """Per-seed recoveries over the seeds that have all three cells."""
    clean = cell_values(report, "clean", "none", seeds)
    attacked = cell_values(report, attack, "none", seeds)
    defended = cell_values(report, attack, defence, seeds)
    values = []
    for seed in sorted(defended):
        if seed in clean and seed in attacked and clean[seed] != attacked[seed]:
            values.append(
                (defended[seed] - attacked[seed]) / (clean[seed] - attacked[seed])
            )
    return values


def fmt_acc(values):
    if not values:
        return "—"
    v = list(values.values())
    if len(v) == 1:
        return f"{100 * v[0]:.1f}"
    return f"{100 * np.mean(v):.1f} ± {100 * np.std(v):.1f} (n={len(v)})"


def fmt_recovery(values):
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def multi_seed_lines(report):
    """Per-seed figures for every attack × defence measured with more than one seed."""
    lines = []
    for attack in ATTACKS:
        for defence in DEFENCES:
            if attack == "clean" or defence == "none":
                continue
            values = cell_values(report, attack, defence)
            if len(values) < 2:
                continue
            seeds = sorted(values)
            recoveries = recovery(report, attack, defence, set(seeds))
            per_seed = []
            for seed in seeds:
                clean = cell_values(report, "clean", "none", {seed}).get(seed)
                attacked = cell_values(report, attack, "none", {seed}).get(seed)
                per_seed.append(
                    f"seed {seed}: clean {100 * clean:.1f}, attacked {100 * attacked:.1f}, "
                    f"defended {100 * values[seed]:.1f}"
                    if clean is not None and attacked is not None
                    else f"seed {seed}: defended {100 * values[seed]:.1f}"
                )
            clean_none = cell_values(report, "clean", "none", set(seeds))
            clean_def = cell_values(report, "clean", defence, set(seeds))
            costs = [clean_none[s] - clean_def[s] for s in seeds if s in clean_none and s in clean_def]
            if len(costs) > 1:
                per_seed.append(
                    "clean cost per seed "
                    + ", ".join(f"{100 * c:+.1f}" for c in costs)
                    + f" (mean {100 * np.mean(costs):+.1f})"
                )
            lines += [
                "",
                f"**{ATTACK_LABELS[attack]} × {DEFENCES[defence][0]}, seeds "
                f"{', '.join(map(str, seeds))}**: recovery {fmt_recovery(recoveries)} "
                f"(per seed {', '.join(f'{r:.2f}' for r in recoveries)}); "
                + "; ".join(per_seed)
                + ".",
            ]
    if lines:
        lines = ["", "## Several seeds"] + lines
    return lines


def write_markdown(path, report):
    meta = report.get("meta", {})
    lines = [
        "# Attack × defence on the CIFAR-10 subset",
        "",
        "Commands (in order). Some runs were stopped and started again with the "
        "cells in another order; a command lists what it was asked to run, the "
        "tables below show what was measured. One cell alone: "
        "`--cells attack:defence --seeds N`.",
        "",
    ]
    lines += [f"    {c}" for c in report.get("commands", [])]
    if meta.get("note"):
        lines += ["", f"Note: {meta['note']}."]
    lines += [
        "",
        f"Machine: {meta.get('cpu_model', '?')}, nproc {meta.get('nproc', '?')}; "
        f"TensorFlow {meta.get('tensorflow', '?')}, Keras {meta.get('keras', '?')}  ",
        f"Setup: VGG-like, Adam 1e-3, batch 64, {meta.get('epochs', '?')} epochs; "
        f"class-pattern ε = {meta.get('pattern_epsilon_255', '?')}/255, bias ratio "
        f"{meta.get('pattern_bias', '?')}; test split (932 images) always clean. Test "
        "accuracy in % at the end of training (after any restored weights); mean ± "
        "population std over seeds where n > 1. Recovery = (defended − attacked) / "
        "(clean − attacked), per seed, then averaged.",
        "",
        "## Seed 0 (every cell)",
        "",
        "| attack | defence | test accuracy % | recovery | clean cost (points) | attack's cost under the defence (points) |",
        "|---|---|---|---|---|---|",
    ]
    first = {min(int(c["seed"]) for c in report["cells"].values())} if report["cells"] else set()
    clean_none = cell_values(report, "clean", "none", first)
    sources = set()
    for attack in ATTACKS:
        for defence in DEFENCES:
            values = cell_values(report, attack, defence, first)
            if not values:
                continue
            rec = "—" if attack == "clean" or defence == "none" else fmt_recovery(
                recovery(report, attack, defence, first)
            )
            clean_def = cell_values(report, "clean", defence, first)
            costs = [clean_none[s] - clean_def[s] for s in clean_def if s in clean_none]
            cost = f"{100 * np.mean(costs):+.1f}" if costs and defence != "none" else "—"
            remaining = [clean_def[s] - values[s] for s in values if s in clean_def]
            remaining = (
                f"{100 * np.mean(remaining):.1f}" if remaining and attack != "clean" else "—"
            )
            marks = ""
            for c in report["cells"].values():
                if c["attack"] == attack and c["defence"] == defence and c.get("source"):
                    sources.add(c["source"])
                    marks = " †"
            lines.append(
                f"| {ATTACK_LABELS[attack]} | {DEFENCES[defence][0]} | {fmt_acc(values)}{marks} "
                f"| {rec} | {cost} | {remaining} |"
            )
    lines += [
        "",
        "Clean cost: clean undefended minus clean defended accuracy (positive = the "
        "defence costs clean accuracy). Attack's cost under the defence: clean minus "
        "attacked accuracy, both with the defence.",
    ]
    for source in sorted(sources):
        lines.append(f"† Taken from {source}.")
    lines += multi_seed_lines(report)
    lines += ["", "Defences:", ""]
    measured = {c["defence"] for c in report["cells"].values()}
    lines += [
        f"- {label}: {what}" for name, (label, what) in DEFENCES.items() if name in measured
    ]
    notes = []
    for c in report["cells"].values():
        if c.get("restored_epoch") is not None:
            notes.append(
                f"- seed {c['seed']}, {ATTACK_LABELS[c['attack']]} × "
                f"{DEFENCES[c['defence']][0]}: early stopping ran "
                f"{c['epochs_run']} epochs and restored epoch {c['restored_epoch']}"
                + (" (near chance: warned)" if c.get("restored_near_chance") else "")
            )
    if notes:
        lines += ["", "Early stopping:", ""] + sorted(notes)
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def load_merged(path, merge):
    """The report at `path` with the cells and commands of the comma-separated `merge` files."""
    report = load_report(path)
    for other_path in filter(None, merge.split(",")):
        other = load_report(other_path)
        report["cells"].update(other["cells"])
        report["commands"] += [c for c in other["commands"] if c not in report["commands"]]
    return report


def main(argv=None):
    args = parse_args(argv)
    report = load_merged(args.out, args.merge)
    if not args.report_only:
        import keras
        import tensorflow as tf

        from keras_poison import datasets

        (x_train, y_train), (x_test, y_test) = datasets.load("cifar10", path=args.data)
        data = (
            (x_train.astype("float32") / 255.0, y_train),
            (x_test.astype("float32") / 255.0, y_test),
        )
        report["commands"].append(
            " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)
        )
        info = machine_info()
        report["meta"] = {
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu_model": info.get("cpu_model"),
            "nproc": info.get("nproc"),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "epochs": args.epochs,
            "pattern_epsilon_255": round(args.pattern_epsilon * 255, 3),
            "pattern_bias": args.pattern_bias,
            "separable_epsilon_255": round(args.separable_epsilon * 255, 3),
        }
        for seed in args.seeds:
            todo = list(args.cells)
            if any(a == "targeted_flip" for a, _ in todo) and ("clean", "none") not in todo:
                todo.insert(0, ("clean", "none"))
            for attack, defence in todo:
                key = cell_key(attack, defence, seed)
                if key in report["cells"]:
                    log(f"skip {key} (already measured)")
                    continue
                report["cells"][key] = run_cell(attack, defence, seed, data, report, args)
                save_report(args.out, report)
                write_markdown(os.path.splitext(args.out)[0] + ".md", report)
    save_report(args.out, report)
    write_markdown(os.path.splitext(args.out)[0] + ".md", report)


if __name__ == "__main__":
    main()
