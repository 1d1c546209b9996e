"""Visual inspection of what a detector flags (seed report `000`, §4.5).

Scores and F1 say how well a detector does; looking at the images says why.
`plot_suspicious` draws the most suspicious training images of a
`DetectionReport` with their labels and scores, and, given the ground-truth
mask an attack returns, frames each one as a hit (green) or a false alarm
(red). `plot_confusion_matrix` draws a confusion matrix as a heat map, e.g.
to see which classes a label-flipping attack or a relabelling defence moves.

Both functions build a bare `matplotlib.figure.Figure` with an Agg canvas:
no pyplot, so no GUI backend is chosen and no global figure state is
touched. Save a figure with `fig.savefig(...)` or pass `path=`.
"""

import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_poison._validation import validate_int
from keras_poison.defences.detectors.report import DetectionReport

_DPI = 100
_HIT_COLOUR = "tab:green"
_FALSE_ALARM_COLOUR = "tab:red"


def plot_suspicious(
    report,
    x,
    num_examples=25,
    columns=5,
    class_names=None,
    true_mask=None,
    path=None,
    title=None,
):
    """Draws the most suspicious images of a detection report in a grid.

    The images are taken in the order of `report.ranking` (most suspicious
    first, ties in data order), one axes per image and no empty axes. Each
    image is titled with its index in `x` and its score, then with the label
    it was given (when `report.given_labels` is set) and the label the
    detector suggests (when `report.suggested_labels` is set). When
    `true_mask` is passed, each image gets a thick frame and a word under
    its score: green "poisoned" for a hit, red "clean" for a false alarm.

    Images may be of shape `(n, H, W, C)` with `C` 1 or 3, or `(n, H, W)`
    (grayscale). Integer images are read as `[0, 255]` and float images as
    `[0, 1]`; if any value of `x` lies outside that range, every shown image
    is instead min-max rescaled on its own (a constant image then shows
    black), so e.g. images standardized to `[-1, 1]` still display.

    Args:
        report: the `DetectionReport` of a detector run on `x`.
        x: array-like of images, one per score of `report`, in the layout
            above.
        num_examples: int >= 1, how many images to show; larger values are
            clamped to the number of images. Defaults to `25`.
        columns: int >= 1, images per row of the grid (fewer when fewer
            images are shown). Defaults to `5`.
        class_names: sequence of names indexed by label, used in the titles
            instead of label numbers; it must name every given and suggested
            label of the report. Defaults to `None`.
        true_mask: bool array `(n,)`, the ground-truth mask of poisoned
            examples (what an attack's `poison` returns), or `None` for no
            frames. Defaults to `None`.
        path: str or path-like ending in `.png`; when set, the figure is also
            written there as a PNG. Its folder must exist. Defaults to
            `None`.
        title: str, the figure's title, or `None` for one naming the
            detector and how many images are shown. Defaults to `None`.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    >>> from keras_poison.defences.detectors.report import DetectionReport
    >>> report = DetectionReport(
    ...     scores=np.array([0.1, 0.9, 0.5, 0.3]),
    ...     flagged=np.array([False, True, True, False]),
    ...     suggested_labels=np.array([0, 0, 1, 0]),
    ...     given_labels=np.array([0, 1, 1, 0]),
    ... )
    >>> x = np.random.default_rng(0).random((4, 8, 8, 3))
    >>> fig = plot_suspicious(report, x, num_examples=2,
    ...                       class_names=["cat", "dog"])
    >>> for ax in fig.axes:
    ...     print(" | ".join(ax.get_title().splitlines()))
    #1  score 0.9 | given: dog | suggested: cat
    #2  score 0.5 | given: dog | suggested: dog

    Keep it with `fig.savefig("suspicious.png")`, or pass `path=`.
    """
    if not isinstance(report, DetectionReport):
        raise TypeError(
            "Expected `report` to be a DetectionReport. "
            f"Received: report of type {type(report).__name__}"
        )
    n = report.num_examples
    if n == 0:
        raise ValueError("Expected `report` to hold at least one example. Received: 0 examples")
    images = _as_images(x, n)
    num_examples = min(validate_int("num_examples", num_examples, 1), n)
    columns = validate_int("columns", columns, 1)
    labels = [lab for lab in (report.given_labels, report.suggested_labels) if lab is not None]
    needed = max((int(lab.max()) + 1 for lab in labels), default=0)
    names = _class_names(class_names, needed, "to name every label of the report")
    if true_mask is not None:
        true_mask = _as_truth(true_mask, n)
    path = _png_path(path)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"Expected `title` to be a str or None. Received: title={title!r}")

    shown = report.ranking[:num_examples]
    pixels = _display_range(images, shown)
    columns = min(columns, num_examples)
    rows = math.ceil(num_examples / columns)
    lines = 1 + len(labels) + (true_mask is not None)
    fig = Figure(
        figsize=(2.2 * columns, (2.2 + 0.17 * lines) * rows + 0.5),
        dpi=_DPI,
        layout="constrained",
    )
    FigureCanvasAgg(fig)

    def label_text(array, index):
        label = int(array[index])
        return str(names[label]) if names is not None else str(label)

    for position, index in enumerate(shown):
        ax = fig.add_subplot(rows, columns, position + 1)
        image = pixels[position]
        if image.ndim == 2:
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        text = [f"#{index}  score {report.scores[index]:.3g}"]
        if report.given_labels is not None:
            text.append(f"given: {label_text(report.given_labels, index)}")
        if report.suggested_labels is not None:
            text.append(f"suggested: {label_text(report.suggested_labels, index)}")
        colour = None
        if true_mask is not None:
            poisoned = bool(true_mask[index])
            colour = _HIT_COLOUR if poisoned else _FALSE_ALARM_COLOUR
            text.append("poisoned" if poisoned else "clean")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4)
        ax.set_title("\n".join(text), fontsize=8, color=colour or "black")

    if title is None:
        title = f"{num_examples} most suspicious of {n} examples ({report.detector})"
        if true_mask is not None:
            title += "\ngreen: poisoned (hit), red: clean (false alarm)"
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        fig.savefig(path, format="png", dpi=_DPI)
    return fig


def plot_confusion_matrix(matrix, class_names=None, normalize=False, path=None, title=None):
    """Draws a confusion matrix as an annotated heat map.

    Rows are true classes and columns predicted classes, as in
    `keras_poison.metrics.confusion_matrix`. Each cell shows its count (or,
    with `normalize=True`, its share of the row, to two decimals); the colour
    follows the same value. With `normalize=True`, a row with no examples has
    no shares: its cells are left blank and show "-".

    Args:
        matrix: square array-like `(K, K)` of non-negative, finite int or
            float entries; `[i, j]` counts examples of true class `i`
            predicted as class `j`.
        class_names: sequence of `K` names for the tick labels, or `None`
            for the class indices. Defaults to `None`.
        normalize: bool, whether to show each row as shares of its total
            instead of counts. Defaults to `False`.
        path: str or path-like ending in `.png`; when set, the figure is also
            written there as a PNG. Its folder must exist. Defaults to
            `None`.
        title: str, the figure's title, or `None` for "Confusion matrix"
            (with "(row shares)" when normalized). Defaults to `None`.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    >>> from keras_poison.metrics import confusion_matrix
    >>> matrix = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], num_classes=3)
    >>> fig = plot_confusion_matrix(matrix, class_names=["cat", "dog", "fox"])
    >>> [text.get_text() for text in fig.axes[0].texts]
    ['1', '1', '0', '0', '1', '0', '0', '0', '1']
    >>> fig = plot_confusion_matrix(matrix, normalize=True)
    >>> [text.get_text() for text in fig.axes[0].texts][:3]
    ['0.50', '0.50', '0.00']
    """
    array = np.asarray(matrix)
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"Expected `matrix` to hold int or float counts. Received: matrix.dtype={array.dtype}"
        )
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ValueError(
            f"Expected `matrix` to be square, of shape (K, K) with K >= 1. "
            f"Received: matrix.shape={array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("Expected `matrix` to be finite. Received: NaN or inf entries")
    if np.any(array < 0):
        raise ValueError(
            f"Expected `matrix` to be non-negative. Received: smallest entry {array.min()}"
        )
    k = array.shape[0]
    names = _class_names(class_names, k, "with one name per row", exact=True)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"Expected `normalize` to be a bool. Received: normalize={normalize!r}")
    path = _png_path(path)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"Expected `title` to be a str or None. Received: title={title!r}")

    if normalize:
        totals = array.sum(axis=1, keepdims=True).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(totals > 0, array / totals, np.nan)
        texts = [["-" if np.isnan(v) else f"{v:.2f}" for v in row] for row in values]
    else:
        values = array.astype(np.float64)
        if np.issubdtype(array.dtype, np.integer):
            texts = [[str(int(v)) for v in row] for row in array]
        else:
            texts = [[f"{v:.4g}" for v in row] for row in array]

    side = min(max(4.0, 0.55 * k + 2.0), 16.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    high = 1.0 if normalize else max(float(np.nanmax(values)), 1e-12)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=high, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of row" if normalize else "count")
    fontsize = max(4.0, min(10.0, 100.0 / k))
    for i in range(k):
        for j in range(k):
            value = values[i, j]
            dark = not np.isnan(value) and value > high / 2
            ax.text(
                j,
                i,
                texts[i][j],
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark else "black",
            )
    ticks = np.arange(k)
    tick_labels = [str(name) for name in names] if names is not None else [str(t) for t in ticks]
    if names is not None:
        ax.set_xticks(ticks, tick_labels, rotation=45, ha="right")
    else:
        ax.set_xticks(ticks, tick_labels)
    ax.set_yticks(ticks, tick_labels)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    if title is None:
        title = "Confusion matrix" + (" (row shares)" if normalize else "")
    if title:
        ax.set_title(title)
    if path is not None:
        fig.savefig(path, format="png", dpi=_DPI)
    return fig


def _as_images(x, n):
    """`x` as an `(n, H, W)` or `(n, H, W, C)` array with C in {1, 3}."""
    images = np.asarray(x)
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise TypeError(
            f"Expected `x` to hold int or float pixels. Received: x.dtype={images.dtype}"
        )
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(
            "Expected `x` of shape (n, H, W) or (n, H, W, C) with C 1 or 3. "
            f"Received: x.shape={images.shape}"
        )
    if len(images) != n:
        raise ValueError(
            f"Expected `x` to have one image per score ({n}). Received: x.shape={images.shape}"
        )
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        raise ValueError("Expected `x` to be finite. Received: NaN or inf pixels")
    return images


def _display_range(images, shown):
    """The shown images as floats in [0, 1], `(k, H, W)` or `(k, H, W, 3)`."""
    if np.issubdtype(images.dtype, np.integer):
        low, high = 0, 255
    else:
        low, high = 0.0, 1.0
    selected = images[shown].astype(np.float64)
    if images.min() >= low and images.max() <= high:
        selected = selected / high
    else:
        axes = tuple(range(1, selected.ndim))
        smallest = selected.min(axis=axes, keepdims=True)
        spread = selected.max(axis=axes, keepdims=True) - smallest
        selected = np.divide(
            selected - smallest, spread, out=np.zeros_like(selected), where=spread > 0
        )
    if selected.ndim == 4 and selected.shape[-1] == 1:
        selected = selected[..., 0]
    return selected


def _class_names(class_names, count, what, exact=False):
    """`class_names` as a list of str (or None), checked against `count`."""
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
        raise TypeError(
            "Expected `class_names` to be a sequence of names. "
            f"Received: class_names={class_names!r}"
        )
    names = [str(name) for name in class_names]
    if (len(names) != count) if exact else (len(names) < count):
        amount = f"{count}" if exact else f"at least {count}"
        raise ValueError(
            f"Expected `class_names` {what} ({amount} names). "
            f"Received: len(class_names)={len(names)}"
        )
    return names


def _as_truth(true_mask, n):
    mask = np.asarray(true_mask)
    if mask.shape != (n,):
        raise ValueError(
            f"Expected `true_mask` of shape ({n},), one entry per example. "
            f"Received: true_mask.shape={mask.shape}"
        )
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.isin(mask, (0, 1)).all():
            raise ValueError(
                "Expected `true_mask` to hold booleans. Received: values other than 0/1"
            )
        mask = mask.astype(bool)
    return mask


def _png_path(path):
    """Checks `path` (None, or a `.png` path whose folder exists) early."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Expected `path` to be a str or path-like. Received: path={path!r}")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"Expected `path` to end in .png. Received: path={path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Expected the folder of `path` to exist. Received: path={path!r} "
            f"(no folder {folder!r})"
        )
    return path
