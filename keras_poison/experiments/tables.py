"""`table.md`: seed 000's table and the class-oriented tables, from results.

Figures are means over seeds; with more than one seed each is followed by
`± <sample standard deviation>`.
"""

import numpy as np

from keras_poison.experiments import runner
from keras_poison.experiments import scenarios as scenario_registry

# Seed report 000 (full CIFAR-10, 50,000 training images), validation
# accuracy in %: the reference the first table is shaped after.
SEED_REPORT = {
    "baseline": 82,
    "random_flip": 78,
    "targeted_flip": 73,
    "class_pattern": 67,
    "class_pattern_defended": 72,
}


def markdown(results):
    """The whole `table.md` as a string.

    Args:
        results: the dict `keras_poison.experiments.run` returns.

    Returns:
        Markdown text: a header with the settings and versions, seed 000's
        table, and the class-oriented tables when those scenarios ran.
    """
    lines = _header(results)
    lines += _seed000_table(results)
    lines += _class_oriented_tables(results)
    return "\n".join(lines) + "\n"


def _header(results):
    config, data, versions = results["config"], results["data"], results["versions"]
    seeds = sorted({cell["seed"] for cell in results["cells"].values()})
    return [
        f"# keras-poison run: {config['dataset']}, {config['model']}",
        "",
        f"Data: {config['dataset']}"
        + (f" from `{config['data']}`" if config.get("data") else "")
        + f" ({data['n_train']} train / {data['n_test']} test, images "
        f"{tuple(data['image_shape'])}, {data['num_classes']} classes); the test split "
        "is always clean.  ",
        f"Training: {config['model']}, Adam {config['learning_rate']:g}, batch "
        f"{config['batch_size']}, {config['epochs']} epochs; seeds "
        f"{', '.join(map(str, seeds))}"
        + (" (figures: mean ± sample std over seeds)" if len(seeds) > 1 else "")
        + ".  ",
        f"Versions: keras_poison {versions['keras_poison']}, TensorFlow "
        f"{versions['tensorflow']}, Keras {versions['keras']}.",
        "",
    ]


def by_scenario(results, family):
    """`{(scenario, variant): [records over seeds]}` in registry order, for one family.

    `variant` is `"α=<alpha>"` for each α of a set attack, else `""`; each
    record carries its cell's `seed`.
    """
    rows = {}
    for name, scenario in scenario_registry.SCENARIOS.items():
        if scenario.family != family:
            continue
        for cell in results["cells"].values():
            if cell["scenario"] != name:
                continue
            for variant, record in runner.variants(cell):
                rows.setdefault((name, variant), []).append(dict(record, seed=cell["seed"]))
    return rows


def _values(records, key):
    return [r[key] for r in records if isinstance(r.get(key), (int, float))]


def fmt(values, percent=True, signed=False, digits=1):
    """Mean (± sample std when there are several values) of a list of figures."""
    if not values:
        return "—"
    scale = 100.0 if percent else 1.0
    digits = digits if percent else 3
    mean = scale * float(np.mean(values))
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    if percent and not signed:
        text += "%"
    if len(values) > 1:
        text += f" ± {scale * float(np.std(values, ddof=1)):.{digits}f}"
    return text.replace("-", "−") if signed else text


def _seed000_table(results):
    rows = by_scenario(results, scenario_registry.SEED000)
    if not rows:
        return []
    baseline = _values(rows.get(("baseline", ""), []), "accuracy")
    lines = [
        "## Seed 000: attacks and defences, trained from scratch",
        "",
        "| scenario | test accuracy | test accuracy, mean of the last 5 epochs "
        "| macro-F1 | train accuracy (final, training labels) "
        "| poisoned | Δ accuracy vs baseline (points) | seed report (full CIFAR-10) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, _), records in rows.items():
        accuracy = _values(records, "accuracy")
        delta = (
            "—"
            if name == "baseline" or not baseline or not accuracy
            else f"{100 * (np.mean(accuracy) - np.mean(baseline)):+.1f}".replace("-", "−")
        )
        reference = f"{SEED_REPORT[name]}%" if name in SEED_REPORT else "—"
        lines.append(
            f"| {name} | {fmt(accuracy)} | {fmt(_values(records, 'accuracy_last5'))} "
            f"| {fmt(_values(records, 'macro_f1'), percent=False)} "
            f"| {fmt(_values(records, 'train_accuracy'))} "
            f"| {fmt(_values(records, 'poisoned_fraction'))} | {delta} | {reference} |"
        )
    lines += ["", *_seed000_notes(rows), ""]
    return lines


def _seed000_notes(rows):
    notes = [
        "Test accuracy is measured on the clean test split at the end of training "
        "(after any weights early stopping restored); the test split is also the "
        "validation data, as in seed report 000. It swings a few points from one "
        "epoch to the next, so the mean over the last 5 epochs of the training "
        "curve (fewer if fewer were run; before any weights were restored) is given "
        "beside it."
    ]
    for (name, _), records in rows.items():
        for record in records:
            if record.get("detection"):
                d = record["detection"]
                notes.append(
                    f"- {name} (seed {record['seed']}): the detector flagged "
                    f"{d['num_flagged']} examples ({d['num_poisoned']} were poisoned): "
                    f"precision {_num(d['precision'])}, recall {_num(d['recall'])}, F1 "
                    f"{_num(d['f1'])}; {d['labels_restored']} labels restored"
                )
            if record.get("restored_epoch") is not None:
                notes.append(
                    f"- {name} (seed {record['seed']}): early stopping ran "
                    f"{record['epochs_run']} epochs and restored epoch {record['restored_epoch']}"
                    + (" (near chance)" if record.get("restored_near_chance") else "")
                )
            if record.get("pairs") and record["seed"] == records[0]["seed"]:
                pairs = ", ".join(f"{s}→{t}" for s, t in record["pairs"])
                notes.append(f"- {name} (seed {record['seed']}): pairs {pairs}")
    return notes


def _num(value):
    return "—" if value is None else f"{value:.2f}"


def _class_oriented_tables(results):
    rows = by_scenario(results, scenario_registry.CLASS_ORIENTED)
    if not rows:
        return []
    # One base model per seed, shared by every row of that seed.
    base = {
        r["seed"]: r["base_accuracy"] for records in rows.values() for r in records
        if isinstance(r.get("base_accuracy"), (int, float))
    }
    # Top-5 beside top-1 where the model reports it (ResNet-50, paper Table 1).
    base_top5 = {
        r["seed"]: r["base_top5_accuracy"] for records in rows.values() for r in records
        if isinstance(r.get("base_top5_accuracy"), (int, float))
    }
    top5 = any(_values(records, "top5_accuracy") for records in rows.values())
    lines = [
        "## Class-oriented poisoning (seed 003): fine-tuning a clean base model",
        "",
        f"Base model test accuracy: {fmt(list(base.values()))}"
        + (f" (top-5: {fmt(list(base_top5.values()))})" if base_top5 else "")
        + ". CTT (eq. 9) and CFT (eq. 10) "
        "are changes against the base model's test predictions, in points; positive = "
        "harm.",
        "",
        "| scenario | variant | test accuracy | " + ("test top-5 accuracy | " if top5 else "")
        + "test error | CTT | victim CFT | max non-victim CFT | poisoned |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if top5 else ""),
    ]
    for (name, variant), records in rows.items():
        lines.append(
            f"| {name} | {variant or '—'} | {fmt(_values(records, 'accuracy'))} "
            + (f"| {fmt(_values(records, 'top5_accuracy'))} " if top5 else "")
            + f"| {fmt(_values(records, 'test_error'))} "
            f"| {fmt(_values(records, 'ctt'), signed=True)} "
            f"| {fmt(_values(records, 'victim_cft'), signed=True)} "
            f"| {fmt(_values(records, 'max_non_victim_cft'), signed=True)} "
            f"| {_poisoned(records)} |"
        )
    lines += ["", *_cft_table(results, rows)]
    return lines


def _poisoned(records):
    counts = [r.get("poisoned_count") for r in records if r.get("poisoned_count") is not None]
    if counts:
        return f"{int(np.mean(counts))} of {records[0].get('training_examples', '?')}"
    return "1 (single instance)" if records[0].get("training_examples") == 1 else "—"


def _cft_table(results, rows):
    """Per-class CFT (paper Table 3) of every COES-family row."""
    names = results["data"]["class_names"]
    chosen = {k: v for k, v in rows.items() if k[0].startswith("coes")}
    if not chosen:
        return []
    victim = next(iter(chosen.values()))[0].get("victim")
    header = [f"{n} (victim)" if i == victim else n for i, n in enumerate(names)]
    lines = [
        "### CFT per class (COES and its label-flip baselines)",
        "",
        "| scenario | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(names),
    ]
    for (name, _), records in chosen.items():
        cells = []
        for k in range(len(names)):
            values = [
                r["cft_per_class"][k] for r in records
                if isinstance(r["cft_per_class"][k], (int, float))
            ]
            cells.append(fmt(values, signed=True))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]
