"""Removing class-wise additive patterns (clean-label shortcut noise).

The seed report's class-wise clean-label attack (000, §3.2) adds one fixed
pattern `delta_c` to every training image of class `c`. Because the pattern is
identical in every image of its class while natural images vary, it survives
averaging: the mean of class `c`'s images is its natural mean plus `delta_c`.
Natural class means are smooth (they average many scenes), whereas a noise
pattern is not, so the fine-grained (high-pass) part of each class mean, less
the same part averaged over classes, estimates `delta_c`'s noise component.

The estimate is shrunk towards zero by how much it exceeds the sampling noise
of a class mean (a positive-part James–Stein factor per class), so on clean
data (where a class mean's fine detail is sampling noise) almost nothing is
removed. A constant per-class colour shift cannot be told apart from a class's
natural colour this way and is left in place.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import default_value_range
from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_int
from keras_poison._validation import validate_num_classes
from keras_poison._validation import validate_value_range
from keras_poison.attacks.base import register

_FIT_BATCH = 512


@register
class ClassPatternRemoval:
    """Estimates each class's shared additive pattern and subtracts it.

    `fit` makes one streaming pass over the (possibly poisoned) training
    data and keeps, per class, the mean and variance of every image's
    high-pass residual `x - box_blur(x)` (a `kernel_size` box). The pattern of
    class `c` is

        pattern_c = w_c * (r_c - mean_k r_k)

    where `r_c` is class `c`'s mean residual and `w_c = max(0, 1 - N_c /
    |r_c - mean_k r_k|^2)` shrinks it by the expected energy `N_c` of the
    sampling noise of that difference. `remove` (or `ds.apply(removal)`) then
    returns `clip(x - pattern_y)` with labels untouched; apply it to the
    training stream only (test images carry no pattern).

    Args:
        num_classes: int >= 2.
        kernel_size: odd int >= 3, the box blur that separates fine detail
            from smooth content. Defaults to `3`.
        value_range: `(low, high)` of the images, or `None` for `(0, 255)`
            with integer images and `(0, 1)` with floats. Defaults to `None`.
        shrink: bool, whether to apply the shrinkage `w_c`. Defaults to
            `True`.

    Attributes:
        patterns: after `fit`, float32 array `(num_classes, *image_shape)`.
        weights: after `fit`, the shrinkage factors `w_c`.
        signal_to_noise: after `fit`, `|r_c - mean_k r_k|^2 / N_c` per class
            (about 1 on clean data, far above 1 under a class pattern).

    Example:

    >>> attack = keras_poison.ClassPatternNoise(num_classes=2, epsilon=0.1, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0.2, 0.8, size=(200, 8, 8, 3)).astype("float32")
    >>> y = np.arange(200) % 2
    >>> x_poisoned, _, _ = attack.poison(x, y)
    >>> removal = ClassPatternRemoval(num_classes=2).fit(x_poisoned, y)
    >>> x_cleaned, _ = removal.remove(x_poisoned, y)
    >>> before = np.abs(x_poisoned - x).mean()
    >>> bool(np.abs(x_cleaned - x).mean() < 0.5 * before)
    True
    """

    def __init__(self, num_classes, kernel_size=3, value_range=None, shrink=True):
        self.num_classes = validate_num_classes(num_classes)
        self.kernel_size = validate_int("kernel_size", kernel_size, 3)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"Expected an odd `kernel_size`. Received: kernel_size={kernel_size}"
            )
        self.value_range = validate_value_range("value_range", value_range)
        self.shrink = bool(shrink)
        self.patterns = None
        self.weights = None
        self.signal_to_noise = None

    # -- fitting ----------------------------------------------------------

    def _residual(self, images):
        """`x - box_blur(x)` for a batch `(n, H, W, C)` of float32 images."""
        blurred = tf.nn.avg_pool2d(
            images, ksize=self.kernel_size, strides=1, padding="SAME"
        )
        return images - blurred

    def fit(self, x, y=None):
        """Estimates the patterns from training data.

        Args:
            x: images `(n, H, W, C)` or `(n, H, W)`, or a `tf.data.Dataset`
                of `(image, label)` elements or batches (then `y` is `None`).
            y: labels for array `x`, sparse or one-hot.

        Returns:
            `self`, fitted.
        """
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError(
                    "Expected `y=None` when `x` is a tf.data.Dataset of "
                    "(image, label) pairs. Received: y of type "
                    f"{type(y).__name__}"
                )
            batches = self._dataset_batches(x)
        else:
            if y is None:
                raise ValueError("Expected labels `y` with array images `x`. Received: y=None")
            batches = self._array_batches(np.asarray(x), y)

        sums = squares = counts = None
        for images, labels in batches:
            images = tf.convert_to_tensor(images)
            if sums is None:
                self._image_shape = tuple(images.shape[1:])
                self._image_dtype = images.dtype
                sums, squares, counts = self._empty_statistics()
            residual = tf.cast(
                self._residual(self._as_nhwc(tf.cast(images, tf.float32))), tf.float64
            )
            residual = tf.reshape(residual, (tf.shape(residual)[0], -1))
            labels = tf.convert_to_tensor(labels, tf.int64)
            sums += tf.math.unsorted_segment_sum(residual, labels, self.num_classes)
            squares += tf.math.unsorted_segment_sum(
                tf.square(residual), labels, self.num_classes
            )
            counts += tf.math.bincount(
                tf.cast(labels, tf.int32), minlength=self.num_classes,
                maxlength=self.num_classes, dtype=tf.float64,
            )
        if sums is None:
            raise ValueError("Expected a non-empty training set. Received: no examples")
        self._finish_fit(sums.numpy(), squares.numpy(), counts.numpy())
        return self

    def _empty_statistics(self):
        size = int(np.prod(self._image_shape))
        zeros = tf.zeros((self.num_classes, size), tf.float64)
        return zeros, zeros, tf.zeros((self.num_classes,), tf.float64)

    def _as_nhwc(self, images):
        if images.shape.rank == 3:
            return images[..., None]
        if images.shape.rank == 4:
            return images
        raise ValueError(
            "Expected images of shape (H, W) or (H, W, C). Received: image "
            f"shape {tuple(images.shape[1:])}"
        )

    def _array_batches(self, x, y):
        labels, _ = to_class_indices(y, "y")
        if len(labels) != len(x):
            raise ValueError(
                f"Expected as many labels as images. Received: len(x)={len(x)}, "
                f"len(y)={len(labels)}"
            )
        self._check_labels(labels)
        for start in range(0, len(x), _FIT_BATCH):
            yield x[start : start + _FIT_BATCH], labels[start : start + _FIT_BATCH]

    def _dataset_batches(self, dataset):
        x_spec, y_spec = dataset.element_spec
        if x_spec.shape.rank in (2, 3) and y_spec.shape.rank in (0, 1):
            dataset = dataset.batch(_FIT_BATCH)
        for images, labels in dataset:
            labels = labels.numpy()
            if labels.ndim == 2 and labels.shape[1] > 1:
                labels = np.argmax(labels, axis=1)
            labels = labels.reshape(-1).astype(np.int64)
            self._check_labels(labels)
            yield images, labels

    def _check_labels(self, labels):
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"Expected labels in [0, {self.num_classes}). Received: labels in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )

    def _finish_fit(self, sums, squares, counts):
        present = counts > 0
        if present.sum() < 2:
            raise ValueError(
                "Expected examples of at least 2 classes to tell class patterns "
                f"apart. Received: class counts {counts.astype(int).tolist()}"
            )
        safe = np.maximum(counts, 1.0)[:, None]
        means = sums / safe
        # Sampling variance of each class's mean residual, summed over pixels.
        noise = np.maximum(squares / safe - means**2, 0.0).sum(axis=1) / np.maximum(counts, 1.0)
        k = present.sum()
        common = means[present].mean(axis=0)
        differences = np.where(present[:, None], means - common, 0.0)
        # Noise energy of (mean_c - average of the k means), class means independent.
        noise_of_difference = (1 - 2 / k) * noise + noise[present].sum() / k**2
        energy = (differences**2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(noise_of_difference > 0, energy / noise_of_difference, np.inf)
        ratio = np.where(present, ratio, 0.0)
        if self.shrink:
            weights = np.where(ratio > 1, 1.0 - 1.0 / ratio, 0.0)
        else:
            weights = present.astype(np.float64)
        patterns = weights[:, None] * differences
        self.signal_to_noise = ratio
        self.weights = weights
        self.patterns = patterns.reshape((self.num_classes, *self._image_shape)).astype(
            np.float32
        )
        self._pattern_tensor = None

    # -- removing ----------------------------------------------------------

    def _check_fitted(self):
        if self.patterns is None:
            raise ValueError(
                "This ClassPatternRemoval is not fitted yet. Call "
                "`fit(x_train, y_train)` (or `fit(dataset)`) first."
            )

    def _range(self, dtype):
        if self.value_range is not None:
            return self.value_range
        return default_value_range(dtype)

    def _remove_tensor(self, images, labels):
        """Removes the patterns from a batch; `labels` are int class indices."""
        table = self._pattern_tensor
        if table is None:
            with tf.init_scope():
                table = self._pattern_tensor = tf.constant(self.patterns)
        low, high = self._range(images.dtype)
        values = tf.cast(images, tf.float32) - tf.gather(table, labels)
        values = tf.clip_by_value(values, low, high)
        if images.dtype.is_integer:
            values = tf.round(values)
        return tf.cast(values, images.dtype)

    def _check_shape(self, image_shape):
        if tuple(image_shape) != tuple(self.patterns.shape[1:]):
            raise ValueError(
                f"Expected images of shape {tuple(self.patterns.shape[1:])} (as "
                f"fitted). Received: image shape {tuple(image_shape)}"
            )

    def remove(self, x, y):
        """Removes the fitted patterns from NumPy images.

        Args:
            x: images of the fitted shape.
            y: their labels, sparse or one-hot (returned unchanged).

        Returns:
            `(x_cleaned, y)` with `x_cleaned` of `x`'s dtype.
        """
        self._check_fitted()
        x = np.asarray(x)
        self._check_shape(x.shape[1:])
        labels, _ = to_class_indices(y, "y")
        if len(labels) != len(x):
            raise ValueError(
                f"Expected as many labels as images. Received: len(x)={len(x)}, "
                f"len(y)={len(labels)}"
            )
        self._check_labels(labels)
        cleaned = [
            self._remove_tensor(
                tf.convert_to_tensor(x[start : start + _FIT_BATCH]),
                labels[start : start + _FIT_BATCH],
            ).numpy()
            for start in range(0, len(x), _FIT_BATCH)
        ]
        if not cleaned:
            return x.copy(), y
        return np.concatenate(cleaned), y

    def __call__(self, dataset):
        """`ds.apply(removal)`: removes the patterns from every element."""
        self._check_fitted()
        x_spec, y_spec = dataset.element_spec
        image_rank = self.patterns.ndim - 1
        if x_spec.shape.rank == image_rank:
            batched = False
        elif x_spec.shape.rank == image_rank + 1:
            batched = True
        else:
            raise ValueError(
                f"Expected images of shape {tuple(self.patterns.shape[1:])} or "
                f"batches of them. Received: element shape {x_spec.shape}"
            )
        self._check_shape(x_spec.shape[1:] if batched else x_spec.shape)
        one_hot = y_spec.shape.rank == (2 if batched else 1)

        def clean(images, labels):
            indices = tf.argmax(labels, axis=-1) if one_hot else tf.cast(labels, tf.int64)
            if batched:
                indices = tf.reshape(indices, [-1])
                return self._remove_tensor(images, indices), labels
            return self._remove_tensor(images[None], indices[None])[0], labels

        return dataset.map(clean, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "kernel_size": self.kernel_size,
            "value_range": list(self.value_range) if self.value_range else None,
            "shrink": self.shrink,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        fitted = "fitted" if self.patterns is not None else "not fitted"
        return f"ClassPatternRemoval(num_classes={self.num_classes}, {fitted})"
