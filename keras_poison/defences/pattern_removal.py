"""Removing class-wise additive patterns (clean-label shortcut noise).

The seed report's class-wise clean-label attack (000, §3.2) adds one fixed
pattern `delta_c` to every training image of class `c`. Because the pattern is
identical in every image of its class while natural images vary, it survives
averaging: the mean of class `c`'s images is its natural mean plus `delta_c`.
What is left is to tell the pattern from the natural class mean:

* Without trusted data, by scale: photographs with varied framing (CIFAR-10)
  have smooth class means, whereas a noise pattern is not smooth, so the
  fine-grained (high-pass) part of each class mean, less the same part
  averaged over classes, estimates `delta_c`'s noise component. A constant
  colour shift per class cannot be told from a class's natural colour this
  way and stays. Aligned data (digits, MNIST) break the assumption: their
  class means are sharp, and removing their fine detail costs accuracy.
* With a small trusted clean set, by difference: `delta_c` is the training
  class mean minus the trusted class mean, colour shift included.

Either estimate is shrunk towards zero by how far it exceeds the sampling
noise of the class means (a positive-part James–Stein factor per class), so
on clean data little is removed.
"""

import numpy as np
import tensorflow as tf

from keras_poison import streams
from keras_poison._validation import bounds_inside
from keras_poison._validation import default_value_range
from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_int
from keras_poison._validation import validate_num_classes
from keras_poison._validation import validate_value_range
from keras_poison.attacks.keyed_random import validate_seed
from keras_poison.attacks.base import register

_FIT_BATCH = 512


@register
class ClassPatternRemoval:
    """Estimates each class's shared additive pattern and subtracts it.

    `fit` makes one streaming pass over the (possibly poisoned) training
    data and keeps, per class, the mean and variance of every image's
    high-pass residual `x - box_blur(x)` (a `kernel_size` box), or of the
    whole image with `frequencies="all"`. The pattern of class `c` is

        pattern_c = w_c * (r_c - mean_k r_k)

    where `r_c` is class `c`'s mean residual and `w_c = max(0, 1 - N_c /
    |r_c - mean_k r_k|^2)` shrinks it by the expected energy `N_c` of the
    sampling noise of that difference. Given trusted clean data
    (`fit(..., reference=(x_ref, y_ref))`), the pattern is instead
    `w_c * (m_c - m_c^ref)`, the difference of the class means of the whole
    images. `remove` (or `ds.apply(removal)`) then returns
    `clip(x - pattern_y)` with labels untouched; apply it to the training
    stream only (test images carry no pattern).

    Without a reference the estimate assumes smooth natural class means
    (true of CIFAR-10; `signal_to_noise` is about 1–2 there on clean data),
    and leaves a constant colour bias in place: put a `ColourCentering`
    layer in front of the model for that (docs/benchmarks.md §5 measures the
    pair). On aligned images such as digits, pass a `reference`.

    Known adaptive failure: it removes only what its estimator sees. A
    smooth pattern (`SmoothClassPattern`) passes the high-pass estimate
    untouched, and a trusted reference of 500 CIFAR-10 images still leaves
    0.70 of it, the class means of 50 images a class being noisier than a
    16/255 smooth pattern (docs/benchmarks.md §15). `frequencies="all"`
    takes each class's whole mean image (less the average of the class
    means) as its pattern: every class-constant additive pattern, smooth or
    not, goes with it, and so does the natural difference between the class
    means, which the model then never sees in training. On the CIFAR-10
    subset (with `ImageAugmentation` and `ColourCentering`, one seed) it
    undid `SmoothClassPattern` (56.8% test accuracy against 32.1%
    undefended, recovery 0.75) at 7.6 points of clean accuracy (57.6% against
    65.2%). An attacker who varies the pattern from image to image, so that
    the class mean does not hold it, is not removed.

    Args:
        num_classes: int >= 2.
        kernel_size: odd int >= 3, the box blur that separates fine detail
            from smooth content. Defaults to `3`.
        value_range: `(low, high)` of the images, or `None` for `(0, 255)`
            with integer images and `(0, 1)` with floats. Defaults to `None`.
        shrink: bool, whether to apply the shrinkage `w_c`. Defaults to
            `True`.
        frequencies: `"high"` (the high-pass residual of each class mean)
            or `"all"` (the whole class mean). Defaults to `"high"`.

    Attributes:
        patterns: after `fit`, float32 array `(num_classes, *image_shape)`.
        weights: after `fit`, the shrinkage factors `w_c`.
        signal_to_noise: after `fit`, `|r_c - mean_k r_k|^2 / N_c` per class
            (about 1 on clean data, far above 1 under a class pattern).
        class_counts: after `fit`, int array, the training examples of each
            class (a class with none has a zero pattern).

    Example:

    >>> attack = keras_poison.ClassPatternNoise(num_classes=2, epsilon=0.1, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0.2, 0.8, size=(1000, 8, 8, 3)).astype("float32")
    >>> y = np.arange(1000) % 2
    >>> x_poisoned, _, _ = attack.poison(x[:600], y[:600])
    >>> trusted = (x[600:], y[600:])  # a small clean set
    >>> removal = ClassPatternRemoval(num_classes=2).fit(
    ...     x_poisoned, y[:600], reference=trusted)
    >>> x_cleaned, _ = removal.remove(x_poisoned, y[:600])
    >>> before = np.abs(x_poisoned - x[:600]).mean()
    >>> bool(np.abs(x_cleaned - x[:600]).mean() < 0.5 * before)
    True
    """

    def __init__(
        self, num_classes, kernel_size=3, value_range=None, shrink=True, frequencies="high"
    ):
        self.num_classes = validate_num_classes(num_classes)
        self.kernel_size = validate_int("kernel_size", kernel_size, 3)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"Expected an odd `kernel_size`. Received: kernel_size={kernel_size}"
            )
        self.value_range = validate_value_range("value_range", value_range)
        self.shrink = bool(shrink)
        if frequencies not in ("high", "all"):
            raise ValueError(
                'Expected `frequencies` to be "high" or "all". Received: '
                f"frequencies={frequencies!r}"
            )
        self.frequencies = frequencies
        self.patterns = None
        self.weights = None
        self.signal_to_noise = None
        self.class_counts = None

    # -- fitting ----------------------------------------------------------

    def _residual(self, images):
        """`x - box_blur(x)` for a batch `(n, H, W, C)` of float32 images."""
        blurred = tf.nn.avg_pool2d(
            images, ksize=self.kernel_size, strides=1, padding="SAME"
        )
        return images - blurred

    def fit(self, x, y=None, reference=None):
        """Estimates the patterns from training data.

        Args:
            x: images `(n, H, W, C)` or `(n, H, W)`, or a `tf.data.Dataset`
                of `(image, label)` elements or batches (then `y` is `None`).
            y: labels for array `x`, sparse or one-hot.
            reference: `None`, or trusted clean data `(x_ref, y_ref)` (or a
                dataset) with every class. Without it, the fine detail of
                each class mean (or, with `frequencies="all"`, the whole of
                it) less the average class mean is taken as pattern; with it, the pattern
                is the whole difference between the class means of `x` and
                of `reference` (colour shift included), which also suits
                aligned data such as digits. Defaults to `None`.

        Returns:
            `self`, fitted.
        """
        high_pass = reference is None and self.frequencies == "high"
        sums, squares, counts = self._statistics(x, y, "x", high_pass=high_pass)
        fitted_dtype = self._image_dtype
        self.class_counts = counts.astype(np.int64)
        if reference is None:
            self._fitted_dtype = fitted_dtype
            self._finish_fit(sums, squares, counts)
            return self
        if isinstance(reference, tf.data.Dataset):
            reference_x, reference_y = reference, None
        else:
            try:
                reference_x, reference_y = reference
            except (TypeError, ValueError):
                raise TypeError(
                    "Expected `reference` to be a pair (x_ref, y_ref) or a "
                    f"tf.data.Dataset. Received: {type(reference).__name__}"
                ) from None
        shape = self._image_shape
        ref_sums, ref_squares, ref_counts = self._statistics(
            reference_x, reference_y, "reference", high_pass=False
        )
        if self._image_shape != shape:
            raise ValueError(
                f"Expected `reference` images of shape {shape} (as `x`). "
                f"Received: {self._image_shape}"
            )
        missing = np.flatnonzero((ref_counts == 0) & (counts > 0))
        if missing.size:
            raise ValueError(
                "Expected `reference` to hold every class of the training data. "
                f"Received: no reference examples of class(es) {missing.tolist()}"
            )
        self._finish_fit_with_reference(
            (sums, squares, counts), (ref_sums, ref_squares, ref_counts)
        )
        self._fitted_dtype = fitted_dtype
        return self

    def _statistics(self, x, y, name, high_pass):
        """Per-class sums, sums of squares and counts of the (filtered) images."""
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError(
                    f"Expected `y=None` when `{name}` is a tf.data.Dataset of "
                    "(image, label) pairs. Received: y of type "
                    f"{type(y).__name__}"
                )
            batches = self._dataset_batches(x)
        else:
            if y is None:
                raise ValueError(
                    f"Expected labels with array images `{name}`. Received: labels=None"
                )
            batches = self._array_batches(np.asarray(x), y)

        sums = squares = counts = None
        for images, labels in batches:
            images = tf.convert_to_tensor(images)
            if sums is None:
                self._image_shape = tuple(images.shape[1:])
                self._image_dtype = images.dtype
                sums, squares, counts = self._empty_statistics()
            values = self._as_nhwc(tf.cast(images, tf.float32))
            if high_pass:
                values = self._residual(values)
            values = tf.cast(values, tf.float64)
            values = tf.reshape(values, (tf.shape(values)[0], -1))
            labels = tf.convert_to_tensor(labels, tf.int64)
            sums += tf.math.unsorted_segment_sum(values, labels, self.num_classes)
            squares += tf.math.unsorted_segment_sum(
                tf.square(values), labels, self.num_classes
            )
            counts += tf.math.bincount(
                tf.cast(labels, tf.int32), minlength=self.num_classes,
                maxlength=self.num_classes, dtype=tf.float64,
            )
        if sums is None:
            raise ValueError(f"Expected a non-empty `{name}`. Received: no examples")
        return sums.numpy(), squares.numpy(), counts.numpy()

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

    def _class_indices(self, x, y):
        """`y` as checked int64 class indices, one per image of `x`."""
        labels, width = to_class_indices(y, "y")
        if width is not None and width != self.num_classes:
            # The stream refuses this too: a one-hot width is the class count.
            raise ValueError(
                f"Expected one-hot labels of width num_classes={self.num_classes}. "
                f"Received: width {width}"
            )
        if len(labels) != len(x):
            raise ValueError(
                f"Expected as many labels as images. Received: len(x)={len(x)}, "
                f"len(y)={len(labels)}"
            )
        self._check_labels(labels)
        return labels

    def _array_batches(self, x, y):
        labels = self._class_indices(x, y)
        for start in range(0, len(x), _FIT_BATCH):
            yield x[start : start + _FIT_BATCH], labels[start : start + _FIT_BATCH]

    def _dataset_batches(self, dataset):
        layout = streams.describe(
            dataset, caller="ClassPatternRemoval.fit", num_classes=self.num_classes
        )
        if not layout.batched:
            dataset = dataset.batch(_FIT_BATCH)
        block = layout.as_blocks()
        for element in dataset:
            images, labels, _ = block.split(element)
            labels = block.class_indices(labels).numpy().astype(np.int64)
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
        means, noise = _mean_and_noise(sums, squares, counts)
        k = present.sum()
        common = means[present].mean(axis=0)
        differences = np.where(present[:, None], means - common, 0.0)
        # Noise energy of (mean_c - average of the k means), class means independent.
        noise_of_difference = (1 - 2 / k) * noise + noise[present].sum() / k**2
        self._set_patterns(differences, noise_of_difference, present)

    def _finish_fit_with_reference(self, train, reference):
        (sums, squares, counts), (ref_sums, ref_squares, ref_counts) = train, reference
        present = counts > 0
        means, noise = _mean_and_noise(sums, squares, counts)
        ref_means, ref_noise = _mean_and_noise(ref_sums, ref_squares, ref_counts)
        differences = np.where(present[:, None], means - ref_means, 0.0)
        self._set_patterns(differences, noise + ref_noise, present)

    def _set_patterns(self, differences, noise_energy, present):
        """Shrinks each class's estimate by its signal-to-noise ratio and keeps it."""
        energy = (differences**2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(noise_energy > 0, energy / noise_energy, np.inf)
        ratio = np.where(present, ratio, 0.0)
        if self.shrink:
            with np.errstate(divide="ignore"):  # a missing class has ratio 0
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

    def _checked_range(self, dtype, caller="ClassPatternRemoval"):
        """The value range for images of `dtype`, refusing what would be a silent wrong result.

        The patterns are in the units of the images they were fitted on, so
        images whose assumed range differs (fitted on uint8 grey levels,
        applied to floats in [0, 1]) are refused; so is a range that integer
        images cannot hold, where clipping then casting would wrap around.
        """
        dtype = tf.as_dtype(dtype)
        if self.value_range is None:
            fitted = default_value_range(self._fitted_dtype)
            if default_value_range(dtype) != fitted:
                raise ValueError(
                    f"{caller}: fitted on {tf.as_dtype(self._fitted_dtype).name} images, "
                    f"whose patterns are in the units of the range {fitted}. Received: "
                    f"{dtype.name} images (range {default_value_range(dtype)}). Apply "
                    "it to images like those it was fitted on, or pass `value_range`."
                )
        low, high = self._range(dtype)
        if dtype.is_integer and (np.ceil(low) < dtype.min or np.floor(high) > dtype.max):
            raise ValueError(
                f"{caller}: expected a `value_range` that {dtype.name} images can hold, "
                f"inside [{dtype.min}, {dtype.max}]. Received: value_range=({low:g}, "
                f"{high:g}) for {dtype.name} images."
            )
        return low, high

    def _table(self):
        """The fitted patterns as a constant tensor, made once."""
        if self._pattern_tensor is None:
            with tf.init_scope():
                self._pattern_tensor = tf.constant(self.patterns)
        return self._pattern_tensor

    def _remove_tensor(self, images, labels):
        """Removes the patterns from a batch; `labels` are int class indices."""
        return _shift_images(
            images, -tf.gather(self._table(), labels), self._checked_range(images.dtype),
            caller="ClassPatternRemoval",
        )

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
        labels = self._class_indices(x, y)
        low, high = self._checked_range(x.dtype)
        if x.size and not _inside(x, (low, high)):
            # The stream's check (in `_shift_images`), with the values seen.
            raise ValueError(
                f"ClassPatternRemoval: expected images in value_range=({low:g}, "
                f"{high:g}). Received: values in [{float(np.nanmin(x)):g}, "
                f"{float(np.nanmax(x)):g}]{' and NaN' if np.isnan(x).any() else ''}. "
                "Pass the images' range as `value_range`."
            )
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
        """`ds.apply(removal)`: removes the patterns from every element; see `transform`."""
        return self.transform(dataset)

    def transform(self, dataset, batched=None, image_key=None):
        """Removes the fitted patterns from a `tf.data.Dataset` as it streams.

        Each image loses its own class's pattern, so the result does not
        depend on the order of the stream: it may be shuffled or repeated
        first. Elements may be `(x, y)` or `(x, y, sample_weight)`, labels
        sparse, `(n, 1)` or one-hot, batched or not (see
        `keras_poison.streams`).

        Args:
            dataset: the stream to clean.
            batched: bool or `None` (decide from the stream). Defaults to `None`.
            image_key: where the images sit in a dict or tuple `x`.
                Defaults to `None`.

        Returns:
            The cleaned `tf.data.Dataset`, same element structure.
        """
        self._check_fitted()
        layout, _ = self._stream_layout(dataset, "ClassPatternRemoval", batched, image_key)
        clean = _on_blocks(layout, self._remove_tensor, self.num_classes, "ClassPatternRemoval")
        # map hands a tuple element over as several arguments: pack them again.
        return dataset.map(
            lambda *element: clean(element),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def _stream_layout(self, dataset, caller, batched, image_key):
        """The stream's layout and value range, checked against what was fitted."""
        layout = streams.describe(
            dataset, caller=caller, batched=batched, image_key=image_key,
            num_classes=self.num_classes,
        )
        spec = layout.image_spec
        self._check_shape(spec.shape[1:] if layout.batched else spec.shape)
        return layout, self._checked_range(spec.dtype, caller=caller)

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "kernel_size": self.kernel_size,
            "value_range": list(self.value_range) if self.value_range else None,
            "shrink": self.shrink,
            "frequencies": self.frequencies,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        fitted = "fitted" if self.patterns is not None else "not fitted"
        return f"ClassPatternRemoval(num_classes={self.num_classes}, {fitted})"


@register
class ClassPatternSwap:
    """Trains on each image with a random class's mean in place of its own.

    `ClassPatternRemoval` subtracts what it estimates of each class's
    pattern, so whatever the estimate misses (or the attacker hides from
    it) is left for the model to learn. The swap does not need the estimate
    to be right. It fits the same per-class patterns (by default the whole
    class means, `frequencies="all"`: `pattern_c = w_c (m_c - mean_k m_k)`,
    see `ClassPatternRemoval`), then, as the training stream is read, moves
    every image by `pattern_r - pattern_y`, its own class's pattern out and
    that of a class `r` drawn uniformly at random in (among the classes the
    training data holds), anew for every image on every pass (epoch). Any
    additive pattern shared by the images of a class, smooth or not, then
    appears in the images of every class alike, so it predicts nothing;
    and, unlike removing the whole class means, the images keep a
    natural-looking class mean (one of the classes'), so the
    model still learns on images like the test images, which it sees
    unchanged. Apply it to the training stream only.

    On the CIFAR-10 subset (with `ImageAugmentation` and `ColourCentering`
    in front of the model, `vgg_like()`, 30 epochs, seed 0;
    docs/benchmarks.md §15) it undid `SmoothClassPattern(epsilon=16/255)`,
    the pattern written against `class_pattern_defences()`: 64.7% test
    accuracy against 32.1% undefended and 65.2% clean (recovery 0.98; 0.96 on
    seed 1), at 1.1 points of clean accuracy (64.2%).

    Known adaptive failure: only additive patterns that the class mean
    holds are moved. A pattern that varies from image to image, a
    class-wise blur (`ClassConvolution`, not additive) or a pattern whose
    class mean is small against natural variation is left in place.
    `SmoothClassPattern(random_sign=True)`, written against it, adds plus
    or minus the pattern by a coin per image, so the class mean holds none
    of it; at the same 16/255 budget it cost the undefended model only 4.1
    points (61.1% against 65.2%, seed 0, docs/benchmarks.md §15): a pattern
    hidden from the class mean is, there, barely a shortcut.

    Randomness: the drawn classes come from `tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)`, one draw per element (per batch, for
    a batched stream, from which the batch's classes follow): every pass
    over the stream (Keras' `fit` starts one per epoch) draws anew, and a
    new stream with the same `seed` and TensorFlow global seed
    (`keras.utils.set_random_seed`) repeats the same passes. Put any
    `cache()` before it: a cache after it freezes the first pass's draws. For NumPy
    arrays, make a stream: `tf.data.Dataset.from_tensor_slices((x, y))`.

    Args:
        num_classes: int >= 2.
        frequencies: `"all"` (the whole class mean) or `"high"` (its
            fine-grained part only, as `ClassPatternRemoval`'s default).
            Defaults to `"all"`.
        kernel_size: odd int >= 3, the box blur of `frequencies="high"`.
            Defaults to `3`.
        value_range: `(low, high)` of the images, or `None` for `(0, 255)`
            with integer images and `(0, 1)` with floats; swapped images are
            clipped to it. Defaults to `None`.
        shrink: bool, whether the patterns are shrunk by their
            signal-to-noise factor `w_c`. Defaults to `True`.
        seed: int or `None` (draws differ from run to run). Defaults to
            `None`.

    Attributes:
        patterns, weights, signal_to_noise, class_counts: after `fit`, as
            in `ClassPatternRemoval`; only classes with a count above zero
            are drawn.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0.2, 0.8, size=(64, 8, 8, 3)).astype("float32")
    >>> y = np.arange(64) % 4
    >>> swap = ClassPatternSwap(num_classes=4, seed=0).fit(x, y)
    >>> train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64).apply(swap)
    >>> images, labels = next(iter(train.batch(64)))
    >>> tuple(images.shape), images.dtype.name
    ((64, 8, 8, 3), 'float32')
    """

    def __init__(
        self,
        num_classes,
        frequencies="all",
        kernel_size=3,
        value_range=None,
        shrink=True,
        seed=None,
    ):
        # The estimator of the patterns is `ClassPatternRemoval`'s, argument checks included.
        self._estimator = ClassPatternRemoval(
            num_classes=num_classes,
            kernel_size=kernel_size,
            value_range=value_range,
            shrink=shrink,
            frequencies=frequencies,
        )
        self.num_classes = self._estimator.num_classes
        self.seed = None if seed is None else validate_seed(seed)

    @property
    def patterns(self):
        return self._estimator.patterns

    @property
    def weights(self):
        return self._estimator.weights

    @property
    def signal_to_noise(self):
        return self._estimator.signal_to_noise

    @property
    def class_counts(self):
        return self._estimator.class_counts

    def fit(self, x, y=None, reference=None):
        """Estimates the patterns from training data; as `ClassPatternRemoval.fit`.

        Args:
            x: images `(n, H, W, C)` or `(n, H, W)`, or a `tf.data.Dataset`
                of `(image, label)` elements or batches (then `y` is `None`).
            y: labels for array `x`, sparse or one-hot.
            reference: `None`, or trusted clean data `(x_ref, y_ref)` (or a
                dataset); then each pattern is the difference between the
                class means of `x` and of `reference`. Defaults to `None`.

        Returns:
            `self`, fitted.
        """
        self._estimator.fit(x, y, reference=reference)
        return self

    def __call__(self, dataset):
        """`ds.apply(swap)`: swaps the patterns of every element; see `transform`."""
        return self.transform(dataset)

    def transform(self, dataset, batched=None, image_key=None):
        """Swaps each image's class pattern for a random class's as the stream is read.

        Elements may be `(x, y)` or `(x, y, sample_weight)`, labels sparse,
        `(n, 1)` or one-hot, batched or not (see `keras_poison.streams`);
        labels and everything but the images pass through unchanged. An
        image whose drawn class is its own comes out bit-identical.

        Args:
            dataset: the training stream.
            batched: bool or `None` (decide from the stream). Defaults to `None`.
            image_key: where the images sit in a dict or tuple `x`.
                Defaults to `None`.

        Returns:
            The `tf.data.Dataset`, same element structure, drawing anew on
            every pass.
        """
        if self.patterns is None:
            raise ValueError(
                "This ClassPatternSwap is not fitted yet. Call "
                "`fit(x_train, y_train)` (or `fit(dataset)`) first."
            )
        layout, value_range = self._estimator._stream_layout(
            dataset, "ClassPatternSwap", batched, image_key
        )
        present = np.flatnonzero(self.class_counts > 0).astype(np.int32)
        with tf.init_scope():
            table = tf.constant(self.patterns)
            # Only classes seen in training are drawn: an absent class has no
            # mean to swap in (its pattern is zero).
            drawable = tf.constant(present)

        def swap(images, own, key):
            which = tf.random.stateless_uniform(
                tf.shape(own), seed=tf.stack([key, tf.constant(0, tf.int64)]),
                minval=0, maxval=len(present), dtype=tf.int32,
            )
            drawn = tf.gather(drawable, which)
            offsets = tf.gather(table, drawn) - tf.gather(table, own)
            moved = _shift_images(images, offsets, value_range, caller="ClassPatternSwap")
            # An image that draws its own class is passed through as it came, bit for bit.
            row_shape = tf.concat([tf.shape(own), tf.ones([tf.rank(images) - 1], tf.int32)], 0)
            return tf.where(tf.reshape(tf.equal(drawn, own), row_shape), images, moved)

        keys = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip((dataset, keys)).map(
            _on_blocks(layout, swap, self.num_classes, "ClassPatternSwap"),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def get_config(self):
        return {**self._estimator.get_config(), "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        fitted = "fitted" if self.patterns is not None else "not fitted"
        return f"ClassPatternSwap(num_classes={self.num_classes}, {fitted})"


def _work_dtype(dtype):
    """The float dtype images of `dtype` are shifted in: exact for every pixel value.

    float32 holds every uint8/int16/uint16 and float16 value exactly; float64
    images, and 32- and 64-bit integers (up to 2**53), need float64.
    """
    dtype = tf.as_dtype(dtype)
    if dtype == tf.float64 or (dtype.is_integer and dtype.size >= 4):
        return tf.float64
    return tf.float32


def _grey_level_bounds(value_range, dtype):
    """The range's bounds as values of `dtype` (whole grey levels for integers)."""
    low, high = value_range
    if tf.as_dtype(dtype).is_integer:
        low, high = np.ceil(low), np.floor(high)
    return low, high


def _inside(x, value_range):
    """Whether NumPy images `x` lie inside the range, compared in their own dtype (NaN is not)."""
    low, high = _grey_level_bounds(value_range, x.dtype)
    kind = x.dtype.type
    return bool(np.all((x >= kind(low)) & (x <= kind(high))))


def _shift_images(images, offsets, value_range, caller):
    """`clip(images + offsets)` in `images`' dtype; images outside the range are an error.

    The range is checked in the images' own dtype, as the attacks check it
    (a float16 image at 0.7 is 0.70019, and inside `(0, 0.7)`). Integer
    images are rounded to whole grey levels.
    """
    low, high = _grey_level_bounds(value_range, images.dtype)
    # Images outside the stated range are an error, never a silent clip.
    inside = tf.debugging.Assert(
        tf.logical_and(
            tf.reduce_all(images >= tf.cast(low, images.dtype)),
            tf.reduce_all(images <= tf.cast(high, images.dtype)),
        ),
        [
            f"{caller}: expected images in value_range=({value_range[0]:g}, "
            f"{value_range[1]:g}); received values in",
            tf.reduce_min(images),
            tf.reduce_max(images),
            "Pass the images' range as `value_range`.",
        ],
    )
    work = _work_dtype(images.dtype)
    with tf.control_dependencies([inside]):
        values = tf.cast(images, work) + tf.cast(offsets, work)
    values = tf.clip_by_value(values, *bounds_inside(value_range, images.dtype))
    if images.dtype.is_integer:
        values = tf.round(values)
    return tf.cast(values, images.dtype)


def _on_blocks(layout, function, num_classes, caller):
    """A `dataset.map` function applying `function(images, class_indices, *extra)` to the images.

    Unbatched elements are treated as blocks of one; labels and everything
    but the images pass through. `extra` are what the map receives after
    the element (a zipped key).
    """
    block = layout.as_blocks()

    def apply(element, *extra):
        if not layout.batched:
            element = tf.nest.map_structure(lambda part: part[None], element)
        images, labels, rest = block.split(element)
        indices = _checked_class_indices(block, labels, num_classes, caller)
        result = block.join(function(images, indices, *extra), labels, rest)
        if not layout.batched:
            result = tf.nest.map_structure(lambda part: part[0], result)
        return result

    return apply


def _checked_class_indices(block, labels, num_classes, caller):
    """int32 class indices of a block's labels, asserted in `[0, num_classes)` and whole."""
    indices = block.class_indices(labels)
    checks = [
        tf.debugging.Assert(
            tf.reduce_all((indices >= 0) & (indices < num_classes)),
            [
                f"{caller}: expected labels in [0, {num_classes}) "
                f"(num_classes={num_classes}). Received: labels in",
                tf.reduce_min(indices),
                tf.reduce_max(indices),
            ],
        )
    ]
    if block.label_format != streams.ONE_HOT and not labels.dtype.is_integer:
        checks.append(
            tf.debugging.Assert(
                tf.reduce_all(tf.equal(labels, tf.round(labels))),
                [
                    f"{caller}: expected sparse labels to be whole numbers. "
                    f"Received: labels of dtype {labels.dtype.name} with fractions."
                ],
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(indices)


def _mean_and_noise(sums, squares, counts):
    """Class means, and the sampling variance of each mean summed over pixels."""
    safe = np.maximum(counts, 1.0)[:, None]
    means = sums / safe
    variance = np.maximum(squares / safe - means**2, 0.0)
    return means, variance.sum(axis=1) / np.maximum(counts, 1.0)
