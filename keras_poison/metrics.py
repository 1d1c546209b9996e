"""Classification metrics for measuring the effect of data poisoning.

All functions take NumPy arrays (or anything `np.asarray` accepts, such as
eager tensors). Labels and predictions may be sparse integer class indices of
shape `(n,)` or `(n, 1)`, or one-hot / probability rows of shape
`(n, num_classes)`, which are reduced with `argmax`. The standard metrics
(`accuracy`, `macro_f1`, `confusion_matrix`) are thin wrappers around
scikit-learn; `ctt_rate` and `cft_rate` are the class-level metrics of the
class-oriented poisoning paper (seed `003`, equations (7)-(10)).
"""

import dataclasses

import numpy as np
from sklearn import metrics as sk_metrics

from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_class
from keras_poison._validation import validate_num_classes


@dataclasses.dataclass(frozen=True, eq=False)
class CTTResult:
    """Change-to-Target (CTT) rates returned by `ctt_rate`.

    Rates are fractions in `[-1, 1]`, not percentages: multiply by 100 to
    compare with the paper's tables. The arrays are read-only.

    Args:
        per_class: Float array of shape `(num_classes,)`. Entry `k` is
            CTT(C_k) of equations (7)-(8): among validation examples whose
            true class is `k`, the fraction predicted as the supplanter after
            poisoning minus the fraction predicted as the supplanter before.
            `NaN` for classes with no examples. The supplanter's own entry is
            computed the same way but is not part of `overall`.
        overall: The overall CTT rate of equation (9): the mean of
            `per_class` over the non-supplanter classes, weighted by their
            example counts (equivalently, the plain mean over every
            non-supplanter example).
        counts: Integer array of shape `(num_classes,)`, the number of
            examples N_k of each true class.
        supplanter: Index of the supplanter class.

    Example:

    >>> result = ctt_rate([0, 0, 1, 2], [0, 0, 1, 2], [2, 0, 2, 2],
    ...                   supplanter=2)
    >>> result.per_class
    array([0.5, 1. , 0. ])
    >>> round(result.overall, 4)
    0.6667
    """

    per_class: np.ndarray
    overall: float
    counts: np.ndarray
    supplanter: int


def accuracy(y_true, y_pred):
    """Fraction of examples whose predicted class equals the true class.

    Args:
        y_true: True labels, sparse of shape `(n,)` / `(n, 1)` or one-hot
            of shape `(n, num_classes)`.
        y_pred: Predicted labels or class scores (probabilities or logits),
            in the same formats as `y_true`.

    Returns:
        A Python float in `[0, 1]`.

    Example:

    >>> accuracy([0, 1, 2, 2], [[0.9, 0.1, 0.0],
    ...                         [0.2, 0.7, 0.1],
    ...                         [0.1, 0.1, 0.8],
    ...                         [0.6, 0.3, 0.1]])
    0.75
    """
    (y_true, y_pred), _ = _prepare({"y_true": y_true, "y_pred": y_pred}, None)
    return float(sk_metrics.accuracy_score(y_true, y_pred))


def macro_f1(y_true, y_pred, num_classes=None):
    """Unweighted mean of the per-class F1 scores.

    Every class in `range(num_classes)` contributes to the mean, including
    classes that appear in neither `y_true` nor `y_pred`; such classes (and
    any class whose precision or recall is undefined) score `0`, following
    `sklearn.metrics.f1_score(..., zero_division=0)`. Pass `num_classes` so
    that the score does not depend on which classes happen to occur.

    Args:
        y_true: True labels, sparse of shape `(n,)` / `(n, 1)` or one-hot
            of shape `(n, num_classes)`.
        y_pred: Predicted labels or class scores, in the same formats as
            `y_true`.
        num_classes: Number of classes K. If `None`, it is inferred as the
            width of one-hot inputs, else one more than the largest label.
            Defaults to `None`.

    Returns:
        A Python float in `[0, 1]`.

    Example:

    >>> round(macro_f1([0, 0, 1, 1], [0, 1, 1, 1]), 4)
    0.7333
    """
    (y_true, y_pred), k = _prepare(
        {"y_true": y_true, "y_pred": y_pred}, num_classes
    )
    return float(
        sk_metrics.f1_score(
            y_true,
            y_pred,
            labels=np.arange(k),
            average="macro",
            zero_division=0,
        )
    )


def confusion_matrix(y_true, y_pred, num_classes=None):
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: True labels, sparse of shape `(n,)` / `(n, 1)` or one-hot
            of shape `(n, num_classes)`.
        y_pred: Predicted labels or class scores, in the same formats as
            `y_true`.
        num_classes: Number of classes K. If `None`, it is inferred as the
            width of one-hot inputs, else one more than the largest label.
            Defaults to `None`.

    Returns:
        An integer array of shape `(K, K)` whose entry `[i, j]` counts the
        examples of true class `i` predicted as class `j`.

    Example:

    >>> confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=3)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 0]])
    """
    (y_true, y_pred), k = _prepare(
        {"y_true": y_true, "y_pred": y_pred}, num_classes
    )
    return sk_metrics.confusion_matrix(y_true, y_pred, labels=np.arange(k))


def ctt_rate(y_true, pred_before, pred_after, supplanter, num_classes=None):
    """Change-to-Target rate of a class-oriented gain (COEG) attack.

    The CTT rate measures how many validation images the poisoning pushed
    into the attacker's supplanter class `s`. For each true class `k`
    (equations (7)-(8) of the class-oriented poisoning paper):

    `CTT(C_k) = mean over i with y_i = k of ([after_i == s] - [before_i == s])`

    and the overall rate (equation (9)) averages CTT(C_k) over the classes
    `k != s`, weighted by their example counts N_k. A class with no
    examples gets `NaN` in `per_class` and does not enter the overall rate.

    Args:
        y_true: True labels of the validation set, sparse of shape `(n,)` /
            `(n, 1)` or one-hot of shape `(n, num_classes)`.
        pred_before: Predictions of the model before poisoning, as labels or
            class scores.
        pred_after: Predictions of the model after poisoning, as labels or
            class scores.
        supplanter: Integer index of the supplanter class, in
            `[0, num_classes)`.
        num_classes: Number of classes K. If `None`, it is inferred as the
            width of one-hot inputs, else one more than the largest label.
            Defaults to `None`.

    Returns:
        A `CTTResult` with fields `per_class` (shape `(K,)`), `overall`
        (float), `counts` (shape `(K,)`) and `supplanter`.

    Example:

    >>> y_true = [0, 0, 1, 1, 1, 2]
    >>> before = [0, 0, 1, 1, 2, 2]
    >>> after = [2, 0, 2, 2, 2, 2]
    >>> result = ctt_rate(y_true, before, after, supplanter=2)
    >>> result.per_class.round(4)
    array([0.5   , 0.6667, 0.    ])
    >>> result.overall  # (2 * 0.5 + 3 * 2/3) / (2 + 3)
    0.6
    """
    (y_true, before, after), k = _prepare(
        {"y_true": y_true, "pred_before": pred_before, "pred_after": pred_after},
        num_classes,
    )
    supplanter = _check_class_index(supplanter, "supplanter", k, num_classes)
    change = (after == supplanter).astype(np.float64) - (
        before == supplanter
    ).astype(np.float64)
    per_class, counts = _per_class_mean(change, y_true, k)

    others = y_true != supplanter
    if not np.any(others):
        raise ValueError(
            "Expected at least one example outside the supplanter class: the "
            "overall CTT rate (eq. 9) averages over non-supplanter classes. "
            f"Received: only examples of class supplanter={supplanter}"
        )
    # The N_k-weighted mean of the per-class means is the plain mean over
    # all non-supplanter examples, which avoids NaN entries entirely.
    overall = float(np.mean(change[others]))
    return CTTResult(
        per_class=_read_only(per_class),
        overall=overall,
        counts=_read_only(counts),
        supplanter=supplanter,
    )


def cft_rate(y_true, pred_before, pred_after, num_classes=None):
    """Change-from-Target rate of each class, for class-oriented suppression.

    The CFT rate of class `k` is the fraction of its validation images that
    the poisoning turned from correctly into incorrectly classified:

    `CFT(C_k) = mean over i with y_i = k of ([before_i == k] - [after_i == k])`

    i.e. the drop in the accuracy of class `k`. Positive values mean harm;
    negative values mean the poisoned model got better on that class. A
    COES attack wants a high CFT rate for its victim class and rates near
    zero for the others.

    Sign convention: this follows the paper's prose and its Table 3 (victim
    CFT 51.14%, non-victim rates that improved are negative). Equation (10)
    as printed subtracts the terms in the opposite order (after minus
    before), which would make a successful attack negative; we take that to
    be a typo.

    Args:
        y_true: True labels of the validation set, sparse of shape `(n,)` /
            `(n, 1)` or one-hot of shape `(n, num_classes)`.
        pred_before: Predictions of the model before poisoning, as labels or
            class scores.
        pred_after: Predictions of the model after poisoning, as labels or
            class scores.
        num_classes: Number of classes K. If `None`, it is inferred as the
            width of one-hot inputs, else one more than the largest label.
            Defaults to `None`.

    Returns:
        A float array of shape `(K,)` with values in `[-1, 1]` (fractions,
        not percentages); `NaN` for classes with no examples in `y_true`.

    Example:

    >>> y_true = [0, 0, 1, 1]
    >>> before = [0, 0, 1, 0]
    >>> after = [0, 1, 1, 1]
    >>> cft_rate(y_true, before, after, num_classes=3)
    array([ 0.5, -0.5,  nan])
    """
    (y_true, before, after), k = _prepare(
        {"y_true": y_true, "pred_before": pred_before, "pred_after": pred_after},
        num_classes,
    )
    change = (before == y_true).astype(np.float64) - (after == y_true).astype(
        np.float64
    )
    per_class, _ = _per_class_mean(change, y_true, k)
    return per_class


def _per_class_mean(values, y_true, num_classes):
    """Mean of `values` over the examples of each true class (NaN if none)."""
    counts = np.bincount(y_true, minlength=num_classes)
    sums = np.bincount(y_true, weights=values, minlength=num_classes)
    means = np.full(num_classes, np.nan)
    present = counts > 0
    means[present] = sums[present] / counts[present]
    return means, counts


def _read_only(array):
    array.setflags(write=False)
    return array


def _prepare(arrays, num_classes):
    """Validates label arrays and converts them to 1-D int64 class indices.

    Returns the converted arrays (in the order given) and the number of
    classes, checked against `num_classes` or inferred from the data.
    """
    num_classes = validate_num_classes(num_classes, allow_none=True)

    labels = {}
    widths = {}
    for name, value in arrays.items():
        labels[name], width = to_class_indices(value, name)
        if width is not None:
            widths[name] = width

    names = list(labels)
    first = names[0]
    for name in names[1:]:
        if len(labels[name]) != len(labels[first]):
            raise ValueError(
                f"Expected `{first}` and `{name}` to have the same length. "
                f"Received: len({first})={len(labels[first])}, "
                f"len({name})={len(labels[name])}"
            )
    if len(labels[first]) == 0:
        raise ValueError(
            f"Expected at least one example. Received: len({first})=0"
        )

    if num_classes is None and widths:
        # One-hot or probability rows fix the number of classes.
        name, num_classes = next(iter(widths.items()))
        source = f"{name}.shape[-1]"
    else:
        source = "num_classes"
    for name, width in widths.items():
        if num_classes is not None and width != num_classes:
            raise ValueError(
                f"Expected `{name}` to have {source}={num_classes} columns. "
                f"Received: {name}.shape[-1]={width}"
            )

    if num_classes is None:
        num_classes = max(int(v.max()) + 1 for v in labels.values())
    for name, value in labels.items():
        if value.max() >= num_classes:
            raise ValueError(
                f"Expected `{name}` labels in [0, {num_classes}) "
                f"({source}={num_classes}). "
                f"Received: {name} contains {int(value.max())}"
            )
    return tuple(labels.values()), num_classes


def _check_class_index(value, name, num_classes, given_num_classes):
    hint = (
        ""
        if given_num_classes is not None
        else " (inferred from the labels; pass `num_classes` if some "
        "classes do not occur)"
    )
    return validate_class(name, value, num_classes, hint=hint)
