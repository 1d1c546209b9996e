"""Per-seed accuracy and recovery from a `keras-poison run` results.json.

The harness's own `table.md` gives mean ± std per scenario. This adds, per
seed, what issue 4 scores a defence by,

    recovery = (defended - attacked) / (clean - attacked)

against the undefended `baseline` and the attack's undefended scenario of
the same seed, once on the final-epoch test accuracy (the protocol) and
once on the mean test accuracy of the last five epochs. At Adam's constant
1e-3 the test accuracy of this small CNN swings by 2-4 points from one epoch
to the next, so the final epoch alone is a noisy read; the five-epoch mean
is the steadier figure and is shown beside it, not instead of it. Where
early stopping restored an earlier epoch the last epochs run are not the
model kept, so those cells have no five-epoch figure.

Usage:

    python benchmarks/harness_recovery.py runs/cifar_seed000/results.json
"""

import argparse
import json

import numpy as np

# Which undefended attack each defended scenario is measured against.
ATTACKED = {
    "class_pattern_defended": "class_pattern",
    "class_pattern_removal": "class_pattern",
    "targeted_flip_gce": "targeted_flip",
    "random_flip_sanitized": "random_flip",
    "random_flip_oracle_drop": "random_flip",
}
LAST = 5


def accuracies(cell):
    """(final-epoch accuracy, mean test accuracy of the last LAST epochs)."""
    curve = cell["history"].get("val_accuracy", [])
    restored = cell.get("restored_epoch") is not None
    tail = float(np.mean(curve[-LAST:])) if curve and not restored else float("nan")
    return cell["accuracy"], tail


def _number(value):
    return "—" if np.isnan(value) else f"{value:.1f}"


def recoveries(table, name, which):
    """Per-seed recoveries of scenario `name`; `which` 0 = final, 1 = last-5."""
    attacked = ATTACKED.get(name)
    if attacked is None or "baseline" not in table or attacked not in table:
        return []
    result = []
    for seed, values in sorted(table[name].items()):
        if np.isnan(values[which]) or seed not in table["baseline"] or seed not in table[attacked]:
            continue
        clean, hit = table["baseline"][seed][which], table[attacked][seed][which]
        result.append((values[which] - hit) / (clean - hit))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a results.json written by keras-poison run")
    args = parser.parse_args(argv)
    cells = json.load(open(args.results))["cells"]
    table = {}
    for cell in cells.values():
        if cell.get("family") == "seed000":
            table.setdefault(cell["scenario"], {})[cell["seed"]] = accuracies(cell)

    print("| scenario | seeds | final epoch % (per seed) | mean % | last-5 mean % (per seed) "
          "| mean % | recovery, final (per seed; mean) | recovery, last-5 (per seed; mean) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by_seed in table.items():
        seeds = sorted(by_seed)
        final = [100 * by_seed[s][0] for s in seeds]
        tail = [100 * by_seed[s][1] for s in seeds]
        row = [name, ",".join(map(str, seeds)),
               " / ".join(f"{v:.1f}" for v in final), f"{np.mean(final):.1f}",
               " / ".join(_number(v) for v in tail), _number(np.mean(tail))]
        for which in (0, 1):
            per_seed = recoveries(table, name, which)
            row.append(" / ".join(f"{r:.2f}" for r in per_seed) + f"; **{np.mean(per_seed):.2f}**"
                       if per_seed else "—")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
