"""Three-seed recovery table of defence pairs, from `defences_cifar.json`.

For each (attack, defence) row and each seed with that cell measured:
recovery = (defended - attacked) / (clean - attacked) against the undefended
clean and attacked cells of the same seed, once on the final-epoch test
accuracy (the protocol) and once on the mean test accuracy of the last five
epochs; the clean cost (clean undefended - clean defended) and the attack's
cost under the defence (clean defended - attacked defended).

Usage:

    python benchmarks/defences_recovery.py [benchmarks/results/defences_cifar.json]

Rows with no cell in the file are left out.
"""

import json
import os
import sys

import numpy as np

DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "defences_cifar.json")
ROWS = [
    ("class_pattern", "removal_centre", "class-pattern noise",
     "`ClassPatternRemoval` + `ColourCentering` (§5 above, earlier runs)"),
    ("class_pattern", "removal_centre_aug", "class-pattern noise",
     "`class_pattern_defences()`: removal + `ImageAugmentation` + `ColourCentering`"),
    ("targeted_flip", "aug_gce", "targeted flip 20%", "`label_flip_defences()`: `ImageAugmentation` + GCE q=0.7"),
    ("random_flip", "aug_gce", "random flip 20%", "`label_flip_defences()`: `ImageAugmentation` + GCE q=0.7"),
]


def signed(values):
    text = " / ".join(f"{v:+.1f}" for v in values) + (f" ({np.mean(values):+.1f})" if values else "—")
    return text.replace("-", "−")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0] if argv else DEFAULT) as f:
        cells = json.load(f)["cells"]

    def acc(key, last5=False):
        cell = cells[key]
        return float(np.mean(cell["history"]["val_accuracy"][-5:])) if last5 else cell["test_accuracy"]

    print("| attack | defence | test accuracy %, seeds 0 / 1 / 2 (attacked undefended) "
          "| recovery, final epoch: per seed; **mean** | recovery, last-5 mean: per seed; **mean** "
          "| clean cost, points: per seed (mean) | attack's cost under the defence, points (mean) |")
    print("|---|---|---|---|---|---|---|")
    for attack, defence, attack_label, defence_label in ROWS:
        seeds = [s for s in (0, 1, 2) if f"{attack}|{defence}|{s}" in cells]
        if not seeds:  # e.g. a longer-training run that measured only some rows
            continue
        shown = " / ".join(f"{100 * acc(f'{attack}|{defence}|{s}'):.1f}" for s in seeds)
        attacked = " / ".join(f"{100 * acc(f'{attack}|none|{s}'):.1f}" for s in seeds)
        recoveries = []
        for last5 in (False, True):
            values = [
                (acc(f"{attack}|{defence}|{s}", last5) - acc(f"{attack}|none|{s}", last5))
                / (acc(f"clean|none|{s}", last5) - acc(f"{attack}|none|{s}", last5))
                for s in seeds
            ]
            recoveries.append(" / ".join(f"{v:.2f}" for v in values) + f"; **{np.mean(values):.2f}**")
        clean_seeds = [s for s in seeds if f"clean|{defence}|{s}" in cells]
        cost = [100 * (acc(f"clean|none|{s}") - acc(f"clean|{defence}|{s}")) for s in clean_seeds]
        under = [100 * (acc(f"clean|{defence}|{s}") - acc(f"{attack}|{defence}|{s}")) for s in clean_seeds]
        print(f"| {attack_label} | {defence_label} | {shown} ({attacked}) | {recoveries[0]} "
              f"| {recoveries[1]} | {signed(cost)} | {signed(under)} |")


if __name__ == "__main__":
    main()
