"""PNG plots of a run: confusion matrices, training curves, CTT and CFT.

Figures are built with `matplotlib.figure.Figure` and `FigureCanvasAgg`
(no pyplot, so nothing global and no display is needed); confusion matrices
reuse `keras_poison.plot_confusion_matrix`.
"""

import os

import numpy as np

from keras_poison.experiments import scenarios as scenario_registry
from keras_poison.experiments import tables

PLOT_DIR = "plots"
_DPI = 110


def write_plots(results, out):
    """Draws every plot that the cells in `results` allow, under `out/plots/`.

    * `confusion_<scenario>[_alpha<α>]_seed<s>.png`: one per cell (and α);
    * `training_curves.png`: training and validation accuracy per epoch of
      the seed 000 scenarios (mean over seeds);
    * `ctt_over_epochs.png`: test error and CTT after every fine-tuning
      epoch of the COEG scenarios (paper Figs. 2 and 4);
    * `ctt_vs_alpha.png`: final CTT and test error against α (paper Fig. 4);
    * `ctt_per_class_vs_alpha.png`: each class's CTT toward the supplanter
      against α, one heat map per set attack (paper Fig. 5); the fine-tuning
      learning rate is in the titles, so runs at two rates (`--param
      finetune_lr=…`) give the paper's Fig. 6 side by side;
    * `cft_per_class.png`: per-class CFT of COES and its baselines (paper
      Table 3).

    Args:
        results: the dict `keras_poison.experiments.run` returns.
        out: the run's output folder.

    Returns:
        The written files, relative to `out`.
    """
    folder = os.path.join(out, PLOT_DIR)
    os.makedirs(folder, exist_ok=True)
    written = _confusion_matrices(results, folder)
    for name, draw in (
        ("training_curves.png", training_curves),
        ("ctt_over_epochs.png", ctt_over_epochs),
        ("ctt_vs_alpha.png", ctt_vs_alpha),
        ("ctt_per_class_vs_alpha.png", ctt_per_class_vs_alpha),
        ("cft_per_class.png", cft_per_class),
    ):
        figure = draw(results)
        if figure is not None:
            figure.savefig(os.path.join(folder, name), format="png", dpi=_DPI)
            written.append(name)
    return [os.path.join(PLOT_DIR, name) for name in written]


def _confusion_matrices(results, folder):
    from keras_poison import plot_confusion_matrix

    names = results["data"]["class_names"]
    written = []
    for cell in results["cells"].values():
        subs = (
            [(f"_alpha{a}", f" α={a}", s) for a, s in cell["alphas"].items()]
            if "alphas" in cell
            else [("", "", cell)]
        )
        for suffix, label, record in subs:
            file = f"confusion_{cell['scenario']}{suffix}_seed{cell['seed']}.png"
            plot_confusion_matrix(
                np.asarray(record["confusion_matrix"]),
                class_names=names,
                path=os.path.join(folder, file),
                title=f"{cell['scenario']}{label}, seed {cell['seed']}",
            )
            written.append(file)
    return written


def _figure(width=10.0, height=4.0, columns=2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, columns, i + 1) for i in range(columns)]


def _mean_curve(curves):
    """Per-epoch mean of curves of possibly different lengths (early stopping)."""
    length = max(len(c) for c in curves)
    return np.array(
        [np.mean([c[i] for c in curves if len(c) > i]) for i in range(length)]
    )


def _grouped(results, family, key, first=None):
    """`{label: [history[key] over seeds]}` for the cells of one family.

    With `first`, each curve starts with `record[first]` (e.g. the base
    model's accuracy as epoch 0).
    """
    grouped = {}
    for (name, variant), records in tables.by_scenario(results, family).items():
        label = f"{name} {variant}".strip()
        for record in records:
            curve = record.get("history", {}).get(key)
            if curve and first is not None:
                curve = [record.get(first)] + curve
            if curve:
                grouped.setdefault(label, []).append([np.nan if v is None else v for v in curve])
    return grouped


def training_curves(results):
    """Training and validation accuracy per epoch, seed 000 scenarios; or `None`."""
    train = _grouped(results, scenario_registry.SEED000, "accuracy")
    if not train:
        return None
    valid = _grouped(results, scenario_registry.SEED000, "val_accuracy")
    figure, (left, right) = _figure()
    for axis, curves, title in (
        (left, train, "training accuracy (training labels)"),
        (right, valid, "validation (clean test) accuracy"),
    ):
        for label, runs in curves.items():
            mean = _mean_curve(runs)
            axis.plot(np.arange(1, len(mean) + 1), mean, marker=".", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.legend(fontsize=7)
    return figure


def ctt_over_epochs(results):
    """Test error and CTT after every fine-tuning epoch; or `None`."""
    ctt = _grouped(results, scenario_registry.CLASS_ORIENTED, "holdout_ctt")
    if not ctt:
        return None
    # Epoch 0 is the base model: its test accuracy, and a CTT of 0 by definition.
    accuracy = _grouped(
        results, scenario_registry.CLASS_ORIENTED, "holdout_accuracy", first="base_accuracy"
    )
    figure, (left, right) = _figure()
    for label, runs in accuracy.items():
        if label in ctt:
            error = 1.0 - _mean_curve(runs)
            left.plot(np.arange(0, len(error)), 100 * error, marker=".", label=label)
    for label, runs in ctt.items():
        mean = _mean_curve(runs)
        right.plot(np.arange(0, len(mean) + 1), 100 * np.r_[0.0, mean], marker=".", label=label)
    left.set_title("test error (%)")
    right.set_title("CTT rate (points)")
    for axis in (left, right):
        axis.set_xlabel("fine-tuning epoch")
        axis.grid(alpha=0.3)
    right.legend(fontsize=7)
    return figure


def ctt_vs_alpha(results):
    """Final CTT and test error against α for the COEG set attack and FL; or `None`."""
    lines = {}
    reference = []
    for cell in results["cells"].values():
        if cell["scenario"] == "finetune_clean":
            reference.append((cell.get("ctt"), cell["test_error"]))
        if "alphas" not in cell:
            continue
        for alpha, record in cell["alphas"].items():
            point = lines.setdefault(cell["scenario"], {}).setdefault(float(alpha), [])
            point.append((record.get("ctt"), record["test_error"]))
    if not lines:
        return None
    figure, (left, right) = _figure()
    for name, points in lines.items():
        alphas = sorted(points)
        if reference:
            # The clean fine-tune is the α = 0 point of every line.
            points = {0.0: reference, **points}
            alphas = [0.0] + alphas
        ctt = [100 * np.mean([p[0] or 0.0 for p in points[a]]) for a in alphas]
        error = [100 * np.mean([p[1] for p in points[a]]) for a in alphas]
        left.plot(alphas, ctt, marker="o", label=name)
        right.plot(alphas, error, marker="o", label=name)
    left.set_title("CTT rate (points)")
    right.set_title("test error (%)")
    for axis in (left, right):
        axis.set_xlabel("poisoned fraction α")
        axis.grid(alpha=0.3)
    right.legend(fontsize=8)
    return figure


def ctt_per_class_grids(results):
    """`{(scenario, learning rate): (alphas, grid)}`, grid[class, α] = mean CTT in points."""
    runs = {}
    for cell in results["cells"].values():
        for alpha, record in cell.get("alphas", {}).items():
            if record.get("ctt_per_class") is None:
                continue
            key = (cell["scenario"], record.get("finetune_learning_rate"))
            runs.setdefault(key, {}).setdefault(float(alpha), []).append(
                [np.nan if v is None else v for v in record["ctt_per_class"]]
            )
    grids = {}
    for key in sorted(runs, key=str):
        alphas = sorted(runs[key])
        grid = np.stack(
            [100 * np.nanmean(np.asarray(runs[key][a], np.float64), axis=0) for a in alphas],
            axis=1,
        )
        grids[key] = (alphas, grid)
    return grids


def ctt_per_class_vs_alpha(results):
    """Per-class CTT toward the supplanter against α, a heat map per set attack; or `None`.

    Paper Fig. 5: how many test images of each class the attacked model
    newly assigns to the supplanter (eq. 9 per class), by poisoned fraction.
    """
    grids = ctt_per_class_grids(results)
    if not grids:
        return None
    supplanter = next(
        (c.get("supplanter") for c in results["cells"].values() if "alphas" in c), None
    )
    # The supplanter's own row is its images' change toward themselves (not in eq. 9).
    names = [f"{n} (supplanter)" if k == supplanter else n
             for k, n in enumerate(results["data"]["class_names"])]
    figure, axes = _figure(width=3.2 * len(grids) + 1.5, height=0.3 * len(names) + 2,
                           columns=len(grids))
    image = None
    for axis, ((scenario, lr), (alphas, grid)) in zip(axes, grids.items()):
        image = axis.imshow(grid, cmap="Reds", vmin=0, vmax=100, aspect="auto")
        for (row, column), value in np.ndenumerate(grid):
            if np.isfinite(value):
                axis.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7)
        axis.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        axis.set_yticks(range(len(names)), names, fontsize=7)
        axis.set_xlabel("poisoned fraction α")
        axis.set_title(f"{scenario}" + (f", lr {lr:g}" if lr is not None else ""), fontsize=9)
    figure.colorbar(image, ax=axes, label="CTT toward the supplanter (points)")
    return figure


def cft_per_class(results):
    """Per-class CFT of COES and its label-flip baselines as grouped bars; or `None`."""
    rows = {}
    for name in ("coes", "coes_fl1", "coes_fl2"):
        for cell in results["cells"].values():
            if cell["scenario"] == name:
                values = [np.nan if v is None else v for v in cell["cft_per_class"]]
                rows.setdefault(name, []).append(values)
    if not rows:
        return None
    names = results["data"]["class_names"]
    figure, (axis,) = _figure(width=max(6.0, 0.8 * len(names) + 2), columns=1)
    width = 0.8 / len(rows)
    positions = np.arange(len(names))
    for i, (name, runs) in enumerate(rows.items()):
        mean = 100 * np.nanmean(np.asarray(runs, np.float64), axis=0)
        axis.bar(positions + (i - (len(rows) - 1) / 2) * width, mean, width, label=name)
    victim = next(c for c in results["cells"].values() if c["scenario"] in rows).get("victim")
    labels = [f"{n}\n(victim)" if k == victim else n for k, n in enumerate(names)]
    axis.set_xticks(positions, labels, fontsize=8)
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_ylabel("CFT rate (points)")
    axis.set_title("CFT per class after fine-tuning")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return figure
