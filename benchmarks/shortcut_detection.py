"""`ClassPatternDetector` against the shortcut attacks, adaptive and published (issue 20).

No training: the detector reads the images. For each seed, every attack of
`benchmarks/defences_cifar.py` that poisons every training image with a
class-wise shortcut (labels clean) is applied to the CIFAR-10 subset, and
`ClassPatternDetector(num_classes=10)` (default threshold 3) scores it:
the classes it flags, its recall (every image is poisoned, so precision is
1 and recall is the share of images flagged), and the largest per-class
signal-to-noise ratio it measured (`details["signal_to_noise"]`). The
clean row gives the ratio on unpoisoned data.

Usage (from the repository root):

    PYTHONPATH=. python benchmarks/shortcut_detection.py --seeds 0,1,2
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time
import types

import numpy as np

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs
from defences_cifar import attacked_data

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10_subset.npz"))
OUT = os.path.join(REPO_ROOT, "benchmarks", "results", "shortcut_detection_cifar.json")
ATTACKS = ("clean", "class_pattern", "smooth_pattern", "class_convolution", "one_pixel",
           "separable_noise")
LABELS = {
    "clean": "clean",
    "class_pattern": "class-pattern noise ε=16/255 (the seed's)",
    "smooth_pattern": "smooth class pattern ε=16/255 (adaptive)",
    "class_convolution": "CUDA class convolution, blur 0.3",
    "one_pixel": "one-pixel shortcut",
    "separable_noise": "linearly separable noise ε=6/255",
}


def main(argv=None):
    import keras_poison as kp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    # The attack settings of defences_cifar.py's defaults.
    settings = types.SimpleNamespace(pattern_epsilon=16 / 255, pattern_bias=0.5,
                                     separable_epsilon=6 / 255)
    (x, y), _ = kp.datasets.load("cifar10", path=CIFAR)
    x = x.astype("float32") / 255.0
    rows = {}
    for attack in ATTACKS:
        for seed in seeds:
            start = time.perf_counter()
            x_p, y_p, mask, _ = attacked_data(attack, seed, x, y, {"cells": {}}, settings)
            detector = kp.ClassPatternDetector(num_classes=10)
            report = detector.detect(x_p, y_p)
            snr = np.asarray(report.details["signal_to_noise"], float)
            flagged = report.flagged
            rows[f"{attack}|{seed}"] = {
                "flagged_classes": detector.flagged_classes.tolist(),
                "flagged": int(flagged.sum()),
                "poisoned": int(mask.sum()),
                "recall": float(flagged[mask].mean()) if mask.any() else None,
                "max_signal_to_noise": float(snr.max()),
                "seconds": time.perf_counter() - start,
            }
            print(attack, seed, rows[f"{attack}|{seed}"], flush=True)
    command = " ".join(shlex.quote(a) for a in ["python"] + sys.argv)
    result = {"command": command, "machine": machine_info(), "cells": rows,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    lines = ["# ClassPatternDetector against the shortcut attacks (CIFAR-10 subset)", "",
             f"Command: `{command}`", "",
             "| attack | classes flagged (per seed) | recall (per seed) | largest signal-to-noise (per seed) |",
             "|---|---|---|---|"]
    for attack in ATTACKS:
        cells = [rows[f"{attack}|{seed}"] for seed in seeds]
        snr = ", ".join(f"{c['max_signal_to_noise']:.1f}" for c in cells)
        recall = ", ".join("–" if c["recall"] is None else f"{c['recall']:.2f}" for c in cells)
        lines.append(
            f"| {LABELS[attack]} | {', '.join(str(len(c['flagged_classes'])) for c in cells)} | "
            f"{recall} | {snr} |")
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
