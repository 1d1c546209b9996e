"""Argument checks shared across the package, with Keras-style messages."""

import warnings

import numpy as np


def validate_rate(name, value):
    """Returns `value` as a float in [0, 1], or raises naming `name`."""
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"Expected `{name}` to be a number in [0, 1]. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"Expected `{name}` in [0, 1]. Received: {name}={value}")
    return float(value)


def validate_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """Returns `value` as a float inside the interval, or raises naming `name`."""
    if isinstance(value, (bool, str, bytes)):
        value_ok = False
    else:
        try:
            value = float(value)
            value_ok = True
        except (TypeError, ValueError):
            value_ok = False
    if not value_ok:
        raise TypeError(f"Expected `{name}` to be a number. Received: {name}={value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if value != value or too_low or too_high:
        interval = (
            ("(" if low_open else "[")
            + ("-inf" if low is None else f"{low:g}")
            + ", "
            + ("inf" if high is None else f"{high:g}")
            + (")" if high_open else "]")
        )
        raise ValueError(f"Expected `{name}` in {interval}. Received: {name}={value}")
    return value


def validate_int(name, value, minimum):
    """Returns `value` as a Python int >= `minimum`, or raises naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"Expected `{name}` to be an int >= {minimum}. Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(f"Expected `{name}` >= {minimum}. Received: {name}={value}")
    return int(value)


def validate_class(name, value, num_classes, hint=""):
    """Returns `value` as a Python int class index, or raises naming `name`.

    Args:
        name: str, the argument's name as the user wrote it.
        value: the class index to check: an int (or NumPy integer), not a
            bool.
        num_classes: int or `None`. With an int, `value` must lie in
            `[0, num_classes)`; with `None` (the classes are not known yet),
            only `value >= 0` is checked.
        hint: str appended to the interval in the `ValueError`, e.g.
            `" (the model's classes)"`. Defaults to `""`.

    Returns:
        `int(value)`.

    Raises:
        TypeError: if `value` is not an int (a bool or float is refused).
        ValueError: if `value` is outside `[0, num_classes)` (or below 0).

    Example:

    >>> validate_class("target", 3, num_classes=10)
    3
    >>> validate_class("target", 12, num_classes=10)
    Traceback (most recent call last):
    ...
    ValueError: Expected `target` in [0, 10). Received: target=12
    """
    interval = ">= 0" if num_classes is None else f"in [0, {num_classes})"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"Expected `{name}` to be an int class index {interval}. "
            f"Received: {name}={value!r}"
        )
    if value < 0 or (num_classes is not None and value >= num_classes):
        raise ValueError(f"Expected `{name}` {interval}{hint}. Received: {name}={value}")
    return int(value)


def renamed_argument(owner, new_name, new_value, old_name, old_value):
    """The value of an argument that was renamed, accepting its old name.

    Passing the old name (not `None`) warns with a `DeprecationWarning` and
    returns its value; passing both names is an error.

    Args:
        owner: str, who takes the argument (for the messages).
        new_name: str, the argument's name now.
        new_value: the value given under `new_name` (`None` if not given).
        old_name: str, its deprecated name.
        old_value: the value given under `old_name` (`None` if not given).

    Returns:
        `old_value` if it was given, else `new_value`.
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(
            f"{owner} got both `{new_name}` and its deprecated alias `{old_name}`. "
            f"Received: {new_name}={new_value!r}, {old_name}={old_value!r}. Pass "
            f"only `{new_name}`."
        )
    warnings.warn(
        f"{owner}: `{old_name}` is deprecated and will be removed; it was renamed "
        f"`{new_name}`. Pass `{new_name}={old_value!r}` instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value


def validate_model_builder(build_model):
    """Returns `build_model` if it is callable or `None`, or raises naming it."""
    if build_model is not None and not callable(build_model):
        raise TypeError(
            "Expected `build_model` to be a function returning a compiled "
            f"keras.Model, or None. Received: {build_model!r}"
        )
    return build_model


def validate_num_classes(num_classes, allow_none=False):
    """Returns `num_classes` as an int >= 2 (or None when allowed)."""
    if num_classes is None and allow_none:
        return None
    return validate_int("num_classes", num_classes, 2)


def validate_value_range(name, value):
    """Returns `(low, high)` floats with low < high (or None), naming `name`."""
    if value is None:
        return None
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(
            f"Expected `{name}` to be a pair (low, high) of numbers or None. "
            f"Received: {name}={value!r}"
        ) from None
    if not low < high:
        raise ValueError(
            f"Expected `{name}` = (low, high) with low < high. "
            f"Received: {name}={tuple(value)}"
        )
    return (low, high)


def default_value_range(dtype):
    """The valid image range assumed when none is given: by (NumPy or TF) dtype."""
    dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    return (0.0, 255.0) if np.issubdtype(dtype, np.integer) else (0.0, 1.0)


def to_class_indices(value, name):
    """Returns `(labels, width)`: 1-D int64 labels and the one-hot width.

    `width` is `None` for sparse inputs.
    """
    array = np.asarray(value)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    width = None
    if array.ndim == 2:
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(
                f"Expected `{name}` to hold numbers. "
                f"Received: {name}.dtype={array.dtype}"
            )
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            # argmax would return the first NaN's column: a plausible label.
            raise ValueError(
                f"Expected finite rows in `{name}` (one-hot labels or class "
                f"scores). Received: NaN or infinite values in {name} (a "
                "diverged model's predictions?)"
            )
        width = array.shape[1]
        array = np.argmax(array, axis=1)
    elif array.ndim != 1:
        raise ValueError(
            f"Expected `{name}` of shape (n,), (n, 1) or (n, num_classes). "
            f"Received: {name}.shape={array.shape}"
        )

    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(
                f"Expected `{name}` to hold integer class indices. "
                f"Received: non-integer values in {name}"
            )
    elif not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"Expected `{name}` to hold integer class indices. "
            f"Received: {name}.dtype={array.dtype}"
        )
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(
            f"Expected `{name}` labels to be >= 0. "
            f"Received: {name} contains {int(array.min())}"
        )
    return array, width


# Softmax outputs in float32 sum to 1 only up to rounding.
PROBABILITY_SUM_TOLERANCE = 1e-3


def check_probabilities(probabilities, name, hint=""):
    """Raises unless every row of a 2-D float array is a probability vector.

    Catches logits passed where softmax outputs are expected (a model
    without a final softmax, or `from_logits` left at its default).
    """
    if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0 or probabilities.max() > 1:
        raise ValueError(
            f"Expected `{name}` to hold probabilities in [0, 1]. Received: values from "
            f"{np.nanmin(probabilities):.4g} to {np.nanmax(probabilities):.4g}{hint}"
        )
    sums = probabilities.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            f"Expected each row of `{name}` to sum to 1 (softmax outputs, not logits). "
            f"Received: row {worst} sums to {sums[worst]:.4f}{hint}"
        )


def bounds_inside(value_range, dtype):
    """`(low, high)` as Python floats that images of `dtype` can hold, inside `value_range`.

    Whole grey levels for integer images. For float16/32/64, the bound moves
    one step inward when the dtype cannot hold it exactly (0.7 is 0.70019 in
    float16): a value clipped in a wider dtype and cast back could otherwise
    round past it.
    """
    import tensorflow as tf

    low, high = (float(bound) for bound in value_range)
    dtype = tf.as_dtype(dtype)
    if dtype.is_integer:
        return float(np.ceil(low)), float(np.floor(high))
    if dtype in (tf.float16, tf.float32, tf.float64):
        kind = dtype.as_numpy_dtype
        inner_low, inner_high = kind(low), kind(high)
        if float(inner_low) < low:
            inner_low = np.nextafter(inner_low, kind(np.inf))
        if float(inner_high) > high:
            inner_high = np.nextafter(inner_high, kind(-np.inf))
        return float(inner_low), float(inner_high)
    return low, high
