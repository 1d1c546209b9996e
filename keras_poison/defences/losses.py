"""Losses that train through noisy or flipped labels.

Each loss follows Keras' own pattern (`keras/src/losses/losses.py`): a plain
function that returns the per-example loss, and a `keras.losses.Loss`
subclass around it that is registered for serialization (when `keras_poison`
is imported: a model compiled with one loads from `.keras` after
`import keras_poison`). All of them accept
sparse integer labels (shape `(n,)` or `(n, 1)`) and one-hot or soft labels
(shape `(n, num_classes)`), and probabilities or logits (`from_logits`).

* `LabelSmoothingCrossentropy`: cross-entropy with label smoothing for
  sparse labels too. Keras' `CategoricalCrossentropy(label_smoothing=...)`
  covers one-hot labels, but `SparseCategoricalCrossentropy` has no
  `label_smoothing` argument; this is the missing piece (seed report 000,
  §4.2, smoothing 0.1).
* `GeneralizedCrossentropy`: Zhang & Sabuncu (2018), the L_q loss.
* `SymmetricCrossentropy`: Wang et al. (2019), CE plus reverse CE.
* `BootstrappingCrossentropy`: Reed et al. (2015), soft and hard
  bootstrapping.

The names follow Keras' spelling (`CategoricalCrossentropy`). The earlier
`GeneralizedCrossEntropy`, `SymmetricCrossEntropy`,
`generalized_cross_entropy` and `symmetric_cross_entropy` remain as
deprecated aliases: they warn with a `DeprecationWarning`, and models saved
with them still load.
"""

import warnings

import keras
from keras import ops

from keras_poison._validation import validate_number
from keras_poison._validation import validate_rate

_EPSILON = 1e-7


def _target_distribution(y_true, y_pred):
    """Returns `y_true` as a float distribution over the classes of `y_pred`.

    Sparse labels (one fewer axis than `y_pred`, or a trailing axis of size 1)
    are one-hot encoded; one-hot and soft labels are cast to float.
    """
    num_classes = y_pred.shape[-1]
    rank_true, rank_pred = len(y_true.shape), len(y_pred.shape)
    if rank_true == rank_pred and y_true.shape[-1] == 1 and num_classes != 1:
        y_true = ops.squeeze(y_true, axis=-1)
        rank_true -= 1
    if rank_true == rank_pred - 1:
        import tensorflow as tf  # a graph assertion (TF backend)

        indices = ops.cast(y_true, "int32")
        # one_hot turns an index outside [0, K) into a row of zeros: a finite,
        # constant loss that trains on nothing. Keras' sparse crossentropy raises.
        inside = tf.debugging.Assert(
            tf.reduce_all((indices >= 0) & (indices < num_classes)),
            [f"Expected sparse labels in [0, {num_classes}) (the width of y_pred). "
             "Received: labels from", tf.reduce_min(indices), "to", tf.reduce_max(indices)],
        )
        with tf.control_dependencies([inside]):
            indices = tf.identity(indices)
        return ops.one_hot(indices, num_classes, dtype=y_pred.dtype)
    if rank_true == rank_pred and y_true.shape[-1] in (num_classes, None):
        return ops.cast(y_true, y_pred.dtype)
    raise ValueError(
        "Expected `y_true` of sparse class indices (shape (batch,) or "
        f"(batch, 1)) or one-hot labels of shape (batch, {num_classes}). "
        f"Received: y_true.shape={tuple(y_true.shape)} for "
        f"y_pred.shape={tuple(y_pred.shape)}"
    )


def _probabilities(y_pred, from_logits):
    """Returns `(p, log_p)` along the last axis, clipped away from 0."""
    y_pred = ops.convert_to_tensor(y_pred)
    if from_logits:
        log_p = ops.log_softmax(y_pred, axis=-1)
        return ops.exp(log_p), log_p
    # Like Keras' crossentropy: renormalize, then keep log() finite.
    p = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    p = ops.clip(p, _EPSILON, 1.0 - _EPSILON)
    return p, ops.log(p)


def label_smoothing_crossentropy(y_true, y_pred, label_smoothing=0.1, from_logits=False):
    """Cross-entropy against labels smoothed towards the uniform distribution.

    With `K` classes the target is `(1 - label_smoothing) * y + label_smoothing / K`
    (Szegedy et al., 2016, §7), the same as Keras' `CategoricalCrossentropy`.

    Args:
        y_true: sparse class indices or one-hot labels.
        y_pred: probabilities, or logits when `from_logits=True`.
        label_smoothing: float in [0, 1). Defaults to `0.1`.
        from_logits: bool. Defaults to `False`.

    Returns:
        The per-example loss, shape `(batch,)`.
    """
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    target = _target_distribution(y_true, y_pred)
    num_classes = ops.cast(ops.shape(y_pred)[-1], target.dtype)
    target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
    _, log_p = _probabilities(y_pred, from_logits)
    return -ops.sum(target * log_p, axis=-1)


def generalized_crossentropy(y_true, y_pred, q=0.7, from_logits=False):
    """Generalized cross-entropy, `L_q = (1 - p_y^q) / q`.

    Zhang & Sabuncu (2018), "Generalized Cross Entropy Loss for Training Deep
    Neural Networks with Noisy Labels", eq. 6. For soft targets `y` the loss
    is `(1 - sum_k y_k p_k^q) / q`, which is eq. 6 for one-hot `y`.

    Args:
        y_true: sparse class indices or one-hot labels.
        y_pred: probabilities, or logits when `from_logits=True`.
        q: float in (0, 1]. Defaults to `0.7` (the paper's choice).
        from_logits: bool. Defaults to `False`.

    Returns:
        The per-example loss, shape `(batch,)`.
    """
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    target = _target_distribution(y_true, y_pred)
    p, _ = _probabilities(y_pred, from_logits)
    return (1.0 - ops.sum(target * ops.power(p, q), axis=-1)) / q


def symmetric_crossentropy(
    y_true, y_pred, alpha=0.1, beta=1.0, log_zero=-4.0, from_logits=False
):
    """Symmetric cross-entropy, `alpha * CE + beta * RCE`.

    Wang et al. (2019), "Symmetric Cross Entropy for Robust Learning with
    Noisy Labels", eqs. 5–7: the reverse cross-entropy is
    `RCE = -sum_k p_k log y_k` with `log 0` replaced by `log_zero` (the
    paper's `A`), so for one-hot labels `RCE = -log_zero * (1 - p_y)`.

    Args:
        y_true: sparse class indices or one-hot labels.
        y_pred: probabilities, or logits when `from_logits=True`.
        alpha: float >= 0, weight of the cross-entropy. Defaults to `0.1`
            (the paper's CIFAR-10 setting).
        beta: float >= 0, weight of the reverse cross-entropy. Defaults to
            `1.0`.
        log_zero: float < 0, the value that stands for `log 0`. Defaults to
            `-4.0`.
        from_logits: bool. Defaults to `False`.

    Returns:
        The per-example loss, shape `(batch,)`.
    """
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    target = _target_distribution(y_true, y_pred)
    p, log_p = _probabilities(y_pred, from_logits)
    cross_entropy = -ops.sum(target * log_p, axis=-1)
    log_target = ops.maximum(ops.log(ops.maximum(target, 1e-30)), log_zero)
    reverse_cross_entropy = -ops.sum(p * log_target, axis=-1)
    return alpha * cross_entropy + beta * reverse_cross_entropy


def bootstrapping_crossentropy(y_true, y_pred, beta=0.95, mode="soft", from_logits=False):
    """Cross-entropy against a mix of the label and the model's own prediction.

    Reed et al. (2015), "Training Deep Neural Networks on Noisy Labels with
    Bootstrapping", §3.2:

    * soft: `-sum_k (beta * y_k + (1 - beta) * p_k) log p_k` (eq. 6),
    * hard: `-sum_k (beta * y_k + (1 - beta) * z_k) log p_k` with `z` the
      one-hot arg max of `p` (eq. 7).

    As in the paper, the gradient also flows through the prediction in the
    soft target (it acts as an entropy penalty); the hard target has none.

    Args:
        y_true: sparse class indices or one-hot labels.
        y_pred: probabilities, or logits when `from_logits=True`.
        beta: float in [0, 1], the weight of the given label. Defaults to
            `0.95` (the paper's soft setting; it used `0.8` for hard).
        mode: `"soft"` or `"hard"`. Defaults to `"soft"`.
        from_logits: bool. Defaults to `False`.

    Returns:
        The per-example loss, shape `(batch,)`.
    """
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    target = _target_distribution(y_true, y_pred)
    p, log_p = _probabilities(y_pred, from_logits)
    if mode == "hard":
        own = ops.one_hot(ops.argmax(p, axis=-1), ops.shape(p)[-1], dtype=p.dtype)
    else:
        own = p
    mixed = beta * target + (1.0 - beta) * own
    return -ops.sum(mixed * log_p, axis=-1)


class _ConfiguredLoss(keras.losses.Loss):
    """A loss that calls a plain function; its arguments are its configuration.

    The role of Keras' `LossFunctionWrapper`, which Keras 3 does not export:
    every keyword argument of the function becomes an attribute and a
    `get_config` entry.
    """

    def __init__(self, fn, name, reduction, dtype, **fn_kwargs):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = fn_kwargs
        for key, value in fn_kwargs.items():
            setattr(self, key, value)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(self._fn_kwargs)
        return config

    def __repr__(self):
        fields = dict(self._fn_kwargs, reduction=self.reduction, name=self.name)
        if self.dtype != keras.config.floatx():
            fields["dtype"] = self.dtype
        arguments = ", ".join(f"{key}={value!r}" for key, value in fields.items())
        return f"{type(self).__name__}({arguments})"


@keras.saving.register_keras_serializable(package="keras_poison")
class LabelSmoothingCrossentropy(_ConfiguredLoss):
    """Cross-entropy with label smoothing, for sparse and one-hot labels.

    Keras' `SparseCategoricalCrossentropy` takes no `label_smoothing`; this
    loss does, and gives the same values as
    `keras.losses.CategoricalCrossentropy(label_smoothing=...)` on one-hot
    labels. The seed report (000, §4.2) trains with smoothing 0.1.

    Args:
        label_smoothing: float in [0, 1). Defaults to `0.1`.
        from_logits: bool, whether `y_pred` are logits. Defaults to `False`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: str. Defaults to `"label_smoothing_crossentropy"`.
        dtype: the loss computation dtype. Defaults to `None`.

    Example:

    >>> loss = LabelSmoothingCrossentropy(label_smoothing=0.1)
    >>> sparse = float(loss([0, 1], [[0.9, 0.1], [0.2, 0.8]]))
    >>> one_hot = float(loss([[1, 0], [0, 1]], [[0.9, 0.1], [0.2, 0.8]]))
    >>> round(sparse, 4) == round(one_hot, 4)
    True
    """

    def __init__(
        self,
        label_smoothing=0.1,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="label_smoothing_crossentropy",
        dtype=None,
    ):
        label_smoothing = validate_number(
            "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True
        )
        super().__init__(
            label_smoothing_crossentropy,
            name=name,
            reduction=reduction,
            dtype=dtype,
            label_smoothing=label_smoothing,
            from_logits=bool(from_logits),
        )


@keras.saving.register_keras_serializable(package="keras_poison")
class GeneralizedCrossentropy(_ConfiguredLoss):
    """Generalized cross-entropy (L_q) loss, robust to flipped labels.

    `L_q(p, y) = (1 - p_y^q) / q` (Zhang & Sabuncu, NeurIPS 2018, eq. 6).
    It tends to cross-entropy as `q -> 0` and to the (noise-robust) mean
    absolute error as `q = 1`; in between, a wrong label's gradient is
    weighted down by `p_y^q`, so examples the model confidently disagrees
    with (often the flipped ones) pull less.

    Known adaptive failure: a flip the model does not confidently disagree
    with is not weighted down. `EvasiveFlip` places them there: on MNIST 5k
    at 20% flips, q = 0.7 recovered none of the 6–7 points they took
    (recovery −0.13 and −0.14, 3 seeds; docs/benchmarks.md §16).

    Args:
        q: float in (0, 1]. Defaults to `0.7` (the paper's choice).
        from_logits: bool, whether `y_pred` are logits. Defaults to `False`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: str. Defaults to `"generalized_crossentropy"`.
        dtype: the loss computation dtype. Defaults to `None`.

    Example:

    >>> loss = GeneralizedCrossentropy(q=0.7)
    >>> value = float(loss([1], [[0.2, 0.8]]))
    >>> round(value, 4) == round((1 - 0.8 ** 0.7) / 0.7, 4)
    True
    >>> loss
    GeneralizedCrossentropy(q=0.7, from_logits=False, reduction='sum_over_batch_size', name='generalized_crossentropy')
    """

    def __init__(
        self,
        q=0.7,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="generalized_crossentropy",
        dtype=None,
    ):
        q = validate_number("q", q, low=0.0, high=1.0, low_open=True)
        super().__init__(
            generalized_crossentropy,
            name=name,
            reduction=reduction,
            dtype=dtype,
            q=q,
            from_logits=bool(from_logits),
        )


@keras.saving.register_keras_serializable(package="keras_poison")
class SymmetricCrossentropy(_ConfiguredLoss):
    """Symmetric cross-entropy: cross-entropy plus reverse cross-entropy.

    `SL = alpha * CE(y, p) + beta * RCE(y, p)` with
    `RCE = -sum_k p_k log y_k` and `log 0` taken as `log_zero` (Wang et al.,
    ICCV 2019, eqs. 5–7). The reverse term is noise-tolerant (for one-hot
    labels it is `-log_zero * (1 - p_y)`, a scaled MAE); the small CE term
    keeps training fast on hard classes.

    Known adaptive failure: flips on borderline examples (`EvasiveFlip`)
    leave `p_y` near the new label's, where the reverse term is no more
    tolerant than cross-entropy: on MNIST 5k at 20% flips `(0.1, 1.0)`
    recovered nothing (−0.11 and −0.06, 3 seeds; docs/benchmarks.md §16).

    Args:
        alpha: float >= 0, weight of the cross-entropy. Defaults to `0.1`
            (the paper's CIFAR-10 setting).
        beta: float >= 0, weight of the reverse cross-entropy. Defaults to
            `1.0`.
        log_zero: float < 0, the stand-in for `log 0` (the paper's `A`).
            Defaults to `-4.0`.
        from_logits: bool, whether `y_pred` are logits. Defaults to `False`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: str. Defaults to `"symmetric_crossentropy"`.
        dtype: the loss computation dtype. Defaults to `None`.

    Example:

    >>> loss = SymmetricCrossentropy(alpha=0.0, beta=1.0)
    >>> round(float(loss([1], [[0.25, 0.75]])), 4)  # 4 * (1 - 0.75)
    1.0
    """

    def __init__(
        self,
        alpha=0.1,
        beta=1.0,
        log_zero=-4.0,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="symmetric_crossentropy",
        dtype=None,
    ):
        alpha = validate_number("alpha", alpha, low=0.0)
        beta = validate_number("beta", beta, low=0.0)
        if alpha == 0.0 and beta == 0.0:
            raise ValueError(
                "Expected `alpha` or `beta` > 0 (both zero gives a zero loss). "
                f"Received: alpha={alpha}, beta={beta}"
            )
        log_zero = validate_number("log_zero", log_zero, high=0.0, high_open=True)
        super().__init__(
            symmetric_crossentropy,
            name=name,
            reduction=reduction,
            dtype=dtype,
            alpha=alpha,
            beta=beta,
            log_zero=log_zero,
            from_logits=bool(from_logits),
        )


@keras.saving.register_keras_serializable(package="keras_poison")
class BootstrappingCrossentropy(_ConfiguredLoss):
    """Bootstrapping loss: trust the label by `beta`, the model by `1 - beta`.

    Reed et al. (ICLR workshop 2015), §3.2: the target is
    `beta * y + (1 - beta) * p` ("soft", eq. 6) or
    `beta * y + (1 - beta) * onehot(argmax p)` ("hard", eq. 7), so once the
    model is confident that a label is wrong, the label pulls less.

    Known adaptive failure: the model is never confident that a flip on a
    borderline example is wrong (`EvasiveFlip`): on MNIST 5k at 20% flips
    soft bootstrapping with beta 0.95 recovered nothing (−0.03 and +0.04,
    3 seeds; docs/benchmarks.md §16).

    Args:
        beta: float in [0, 1], the weight of the given label. Defaults to
            `0.95` (the paper's soft setting; it used `0.8` for hard).
        mode: `"soft"` or `"hard"`. Defaults to `"soft"`.
        from_logits: bool, whether `y_pred` are logits. Defaults to `False`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: str. Defaults to `"bootstrapping_crossentropy"`.
        dtype: the loss computation dtype. Defaults to `None`.

    Example:

    >>> loss = BootstrappingCrossentropy(beta=1.0)  # plain cross-entropy
    >>> round(float(loss([0], [[0.5, 0.5]])), 4)
    0.6931
    """

    def __init__(
        self,
        beta=0.95,
        mode="soft",
        from_logits=False,
        reduction="sum_over_batch_size",
        name="bootstrapping_crossentropy",
        dtype=None,
    ):
        beta = validate_rate("beta", beta)
        if mode not in ("soft", "hard"):
            raise ValueError(
                f"Expected `mode` to be 'soft' or 'hard'. Received: mode={mode!r}"
            )
        super().__init__(
            bootstrapping_crossentropy,
            name=name,
            reduction=reduction,
            dtype=dtype,
            beta=beta,
            mode=mode,
            from_logits=bool(from_logits),
        )


# ----------------------------------------------------------------------
# Deprecated spellings ("CrossEntropy"); Keras writes "Crossentropy".


def _warn_renamed(old, new):
    warnings.warn(
        f"`{old}` is deprecated and will be removed; it was renamed `{new}` "
        "(Keras' spelling, as in `CategoricalCrossentropy`).",
        DeprecationWarning,
        stacklevel=3,
    )


def generalized_cross_entropy(y_true, y_pred, q=0.7, from_logits=False):
    """Deprecated alias of `generalized_crossentropy` (warns)."""
    _warn_renamed("generalized_cross_entropy", "generalized_crossentropy")
    return generalized_crossentropy(y_true, y_pred, q=q, from_logits=from_logits)


def symmetric_cross_entropy(
    y_true, y_pred, alpha=0.1, beta=1.0, log_zero=-4.0, from_logits=False
):
    """Deprecated alias of `symmetric_crossentropy` (warns)."""
    _warn_renamed("symmetric_cross_entropy", "symmetric_crossentropy")
    return symmetric_crossentropy(
        y_true, y_pred, alpha=alpha, beta=beta, log_zero=log_zero, from_logits=from_logits
    )


@keras.saving.register_keras_serializable(
    package="keras_poison", name="GeneralizedCrossEntropy"
)
class GeneralizedCrossEntropy(GeneralizedCrossentropy):
    """Deprecated alias of `GeneralizedCrossentropy` (warns when constructed).

    Kept, and registered under its old name, so that models saved with it
    load without `custom_objects`. Takes the same arguments.
    """

    def __init__(self, *args, **kwargs):
        _warn_renamed("GeneralizedCrossEntropy", "GeneralizedCrossentropy")
        super().__init__(*args, **kwargs)


@keras.saving.register_keras_serializable(
    package="keras_poison", name="SymmetricCrossEntropy"
)
class SymmetricCrossEntropy(SymmetricCrossentropy):
    """Deprecated alias of `SymmetricCrossentropy` (warns when constructed).

    Kept, and registered under its old name, so that models saved with it
    load without `custom_objects`. Takes the same arguments.
    """

    def __init__(self, *args, **kwargs):
        _warn_renamed("SymmetricCrossEntropy", "SymmetricCrossentropy")
        super().__init__(*args, **kwargs)
