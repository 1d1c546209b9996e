"""Class-wise additive patterns: one fixed pattern added to every image of a class.

Seed report 000, §3.2 and Figure 3: "a unique perturbation pattern is
generated for each class, consisting of a random noise component and a
class-specific colour bias. The patterns are applied consistently across all
samples of the corresponding class", labels untouched. A model trained on the
result learns the patterns as shortcuts (training accuracy up, validation
accuracy down). `ClassPatternNoise` is that attack; `SmoothClassPattern` is
the same idea written against the library's own defence for it (smooth,
zero-mean, mirror-symmetric patterns that `ClassPatternRemoval`,
`ColourCentering` and horizontal flips cannot see).
"""

import abc

import numpy as np
import tensorflow as tf

from keras_poison._validation import validate_int
from keras_poison._validation import validate_number
from keras_poison._validation import validate_rate
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import register
from keras_poison.attacks.image_shortcut import ImageShortcutAttack
from keras_poison.attacks.image_shortcut import compute_dtype

# The per-example coin of `SmoothClassPattern(random_sign=True)`.
_SIGN_STREAM = keyed_random.PATTERN_STREAM + 3


class AdditiveClassPattern(ImageShortcutAttack):
    """Base class: adds a fixed pattern `delta_y`, `|delta_y| <= epsilon`, to
    each selected image of class `y` and clips to the value range.

    Subclasses implement `_raw_patterns(image_shape)`, the patterns in the
    images' units as a float64 tensor `(num_classes, *image_shape)`; this
    class rounds them to whole grey levels for integer images, caches them
    and applies them in one pass per block.
    """

    def __init__(self, num_classes, epsilon, *, seed=0, fraction=1.0, value_range=None):
        super().__init__(num_classes, seed=seed, fraction=fraction, value_range=value_range)
        if isinstance(epsilon, bool) or not isinstance(
            epsilon, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"Expected `epsilon` to be a number > 0. Received: epsilon={epsilon!r}"
            )
        if not (np.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"Expected `epsilon` > 0. Received: epsilon={epsilon}")
        self.epsilon = float(epsilon)

    @abc.abstractmethod
    def _raw_patterns(self, image_shape):
        """The patterns `(num_classes, *image_shape)`, float64, `|.| <= epsilon`."""

    def patterns(self, image_shape, dtype="float32"):
        """The per-class patterns `delta_c`, shape `(num_classes, *image_shape)`.

        Args:
            image_shape: shape of one image, e.g. `(32, 32, 3)`.
            dtype: the images' dtype; integer dtypes get patterns rounded to
                whole steps within `floor(epsilon)`. Defaults to `"float32"`.

        Returns:
            A NumPy float array of the patterns in the images' units.
        """
        return self._pattern_table(tuple(image_shape), tf.as_dtype(dtype)).numpy()

    def _pattern_table(self, image_shape, dtype):
        """The patterns as a tensor, computed once per shape and dtype."""
        cache = self._table_cache("_pattern_cache", dict)
        key = (image_shape, dtype.name)
        if key not in cache:
            # Eager even while tf.data traces, so it is captured as a constant.
            with tf.init_scope():
                table = self._raw_patterns(image_shape)
                if dtype.is_integer:
                    steps = float(np.floor(self.epsilon))
                    table = tf.clip_by_value(tf.round(table), -steps, steps)
                cache[key] = tf.cast(table, dtype if dtype.is_floating else tf.float32)
        return cache[key]

    def _kernel_table(self, image_shape, dtype):
        """The patterns in the compute dtype, plus one last row that moves nothing.

        The last row is `-0.0` for float images (`v + -0.0` is `v` bit for
        bit, signed zeros included) and `0` for integer images. Examples that
        are not selected add it, so the block needs no select over its
        pixels: one pass that reads, adds, clips and writes.
        """
        cache = self._table_cache("_kernel_cache", dict)
        key = (image_shape, dtype.name)
        if key not in cache:
            with tf.init_scope():
                table = tf.cast(self._pattern_table(image_shape, dtype), compute_dtype(dtype))
                identity = tf.zeros_like(table[:1])
                if dtype.is_floating:
                    identity = -identity
                cache[key] = tf.concat([table, identity], axis=0)
        return cache[key]

    def _poison_examples(self, x, labels, plan):
        table = self._kernel_table(tuple(x.shape[1:]), x.dtype)
        # Unselected examples take the last row, which leaves them as they are.
        rows = tf.where(plan, labels, self.num_classes)
        low, high = (tf.cast(b, compute_dtype(x.dtype)) for b in self._range_bounds(x.dtype))
        if x.dtype.is_floating:
            # A clip may turn -0.0 into +0.0 at a bound of 0 (which zero
            # `maximum` returns for equal zeros depends on the CPU), so
            # unselected rows are clipped to (-inf, inf) instead: unchanged.
            row_shape = tf.concat([tf.shape(plan), tf.ones([tf.rank(x) - 1], tf.int32)], 0)
            selected = tf.reshape(plan, row_shape)
            low = tf.where(selected, low, tf.constant(-np.inf, x.dtype))
            high = tf.where(selected, high, tf.constant(np.inf, x.dtype))
        shifted = tf.cast(x, compute_dtype(x.dtype)) + tf.gather(table, rows)
        return tf.cast(tf.clip_by_value(shifted, low, high), x.dtype), labels

    def _check_image_spec(self, image_shape, dtype):
        super()._check_image_spec(image_shape, dtype)
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.integer) and self.epsilon < 1:
            raise ValueError(
                f"Expected `epsilon` >= 1 for integer images ({dtype}): a "
                f"smaller budget cannot move a pixel. Received: epsilon={self.epsilon}. "
                "Give `epsilon` in grey levels (e.g. 16 for 16/255), or scale "
                "the images to floats in [0, 1] first."
            )


@register
class ClassPatternNoise(AdditiveClassPattern):
    """Adds the same bounded noise-plus-colour pattern to every image of a class.

    For class `c` the pattern is

        delta_c = epsilon * ((1 - bias_ratio) * noise_c + bias_ratio * colour_c)

    where `noise_c` is uniform in [-1, 1] per pixel and channel and
    `colour_c` is uniform in [-1, 1] per channel, broadcast over the pixels
    (seed 000, §3.2, Figure 3). So `|delta_c| <= epsilon` everywhere. A
    poisoned image is `clip(x + delta_y, *value_range)`; for integer images the
    pattern is rounded to whole grey levels first, so every pixel still moves
    by at most `epsilon`. Labels are untouched (clean-label).

    `fraction` of the examples (exactly `round(fraction * n)`, chosen by the
    same keyed permutation as the label flips) carry their class's pattern;
    the seed uses all of them. The mask marks the examples whose image
    actually changed (a pixel already at the range's edge may not move).

    Known defence: `class_pattern_defences()` (pattern removal, colour
    centering, augmentation) recovers all of its cost on the CIFAR subset
    (docs/benchmarks.md §5); `SmoothClassPattern` is the pattern written to
    slip past that recipe.

    Args:
        num_classes: int >= 2, the number of classes.
        epsilon: float > 0, the largest change of any pixel, in the images'
            own units (e.g. `8` for uint8 images in [0, 255], `8 / 255` for
            floats in [0, 1]).
        seed: int, the key of the patterns and of the selection.
            Defaults to `0`.
        fraction: float in [0, 1], the fraction of examples poisoned.
            Defaults to `1.0`.
        value_range: `(low, high)` or `None`, the images' valid range.
            `None` means `(0, 255)` for integer images and `(0, 1)` for
            floating-point images. Defaults to `None`.
        bias_ratio: float in [0, 1], the share of the budget given to the
            colour bias (the rest goes to the noise). Defaults to `0.5`.

    Example:

    >>> attack = ClassPatternNoise(num_classes=10, epsilon=8, seed=0)
    >>> x = np.full((20, 32, 32, 3), 128, "uint8")
    >>> y = np.arange(20) % 10
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> int(np.abs(x_p.astype(int) - x).max()) <= 8, bool(np.all(y_p == y))
    (True, True)
    >>> bool(np.all(x_p[0] == x_p[10]))  # same class, same pattern
    True
    """

    def __init__(
        self,
        num_classes,
        epsilon,
        *,
        seed=0,
        fraction=1.0,
        value_range=None,
        bias_ratio=0.5,
    ):
        super().__init__(
            num_classes, epsilon, seed=seed, fraction=fraction, value_range=value_range
        )
        self.bias_ratio = validate_rate("bias_ratio", bias_ratio)

    def _raw_patterns(self, image_shape):
        # A colour bias per channel when the shape has 3 axes, otherwise one
        # bias per class.
        num_pixels = int(np.prod(image_shape, dtype=np.int64))
        channels = image_shape[-1] if len(image_shape) == 3 else 1
        noise = tf.random.stateless_uniform(
            (self.num_classes, num_pixels),
            seed=[self.seed, keyed_random.PATTERN_STREAM],
            minval=-1.0,
            maxval=1.0,
            dtype=tf.float64,
        )
        colour = tf.random.stateless_uniform(
            (self.num_classes, 1, channels),
            seed=[self.seed, keyed_random.PATTERN_STREAM + 1],
            minval=-1.0,
            maxval=1.0,
            dtype=tf.float64,
        )
        noise = tf.reshape(noise, (self.num_classes, -1, channels))
        table = self.epsilon * (
            (1.0 - self.bias_ratio) * noise + self.bias_ratio * colour
        )
        return tf.reshape(table, (self.num_classes, *image_shape))

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "epsilon": self.epsilon,
            "seed": self.seed,
            "fraction": self.fraction,
            "value_range": list(self.value_range) if self.value_range else None,
            "bias_ratio": self.bias_ratio,
        }


@register
class SmoothClassPattern(AdditiveClassPattern):
    """A class pattern written to slip past `class_pattern_defences()`.

    An adaptive attack (Tramèr et al. 2020, "On adaptive attacks to
    adversarial example defenses"): the attacker knows the defence recipe
    and spends the same budget where it cannot look. The recipe estimates
    a class's pattern from the *high-pass* residual of its class mean
    (`ClassPatternRemoval` without a trusted reference), removes each
    image's mean colour (`ColourCentering`) and flips images left to right
    (`ImageAugmentation`). So each pattern here is

        delta_c = epsilon * s_c / max|s_c|,
        s_c[i, j, k] = sum_{u, v} a_{c,k,u,v} * cos(pi u (2i + 1) / 2H) * cos(pi v (2j + 1) / 2W)

    a sum of low-frequency 2-D cosines (DCT-II basis functions) with
    `1 <= u + v`, `u, v <= max_frequency`, `v` even, and standard-normal
    coefficients `a` per class, channel and frequency, weighted by
    `1 / (u + v)`:

    * smooth: the 3×3 box-blur residual of a cosine of frequency `u` is about
      `(pi u / H)**2 / 3` of it (3% at `u = 3`, `H = 32`), inside the sampling
      noise that the removal's shrinkage discards;
    * zero-mean in every channel (no `u = v = 0` term): centering each
      image's colour subtracts nothing of it;
    * mirror-symmetric left to right (`v` even): a flipped image carries the
      same pattern in the same place.

    `|delta_c| <= epsilon` everywhere; labels are untouched. Applied like
    `ClassPatternNoise` (same selection, rounding, clipping and mask).

    With `random_sign=True`, written against `ClassPatternSwap` and whole
    class-mean removal (`ClassPatternRemoval(frequencies="all")`), each
    poisoned image gets `+delta_y` or `-delta_y` by a fair coin keyed on
    `(seed, example index)`, so the class mean holds none of the pattern
    (its expectation is zero) and a defence that reads the class mean sees
    nothing; the model can still learn that a strong (either-signed)
    component along `delta_c` means class `c`, a shortcut only a non-linear
    model can use. Measured on the CIFAR-10 subset (`vgg_like()`, 30 epochs,
    seed 0, epsilon 16/255; docs/benchmarks.md §15), the model barely did:
    61.1% test accuracy against 65.2% clean, where the fixed-sign pattern
    left 32.1%.

    Threat model: clean-label availability poisoning by a data owner who
    knows the defence's estimator. Defences that see it: removal with a
    trusted `reference` set large enough for the pattern to stand out of
    the images' own variation (it compares whole class means, smooth parts
    included), and defences that do not rely on the pattern's frequency.

    Args:
        num_classes: int >= 2, the number of classes.
        epsilon: float > 0, the largest change of any pixel, in the images'
            own units.
        seed: int, the key of the patterns and of the selection.
            Defaults to `0`.
        fraction: float in [0, 1], the fraction of examples poisoned.
            Defaults to `1.0`.
        value_range: `(low, high)` or `None`, the images' valid range
            (`None`: `(0, 255)` for integer images, `(0, 1)` for floats).
            Defaults to `None`.
        max_frequency: int >= 1, the highest cosine frequency along each
            axis (in half-periods per image side). Defaults to `3`.
        random_sign: bool, whether each poisoned image's pattern is
            negated by a keyed fair coin. Defaults to `False`.

    Example:

    >>> attack = SmoothClassPattern(num_classes=10, epsilon=16 / 255, seed=0)
    >>> delta = attack.patterns((32, 32, 3))
    >>> bool(np.abs(delta).max() <= 16 / 255 + 1e-7)
    True
    >>> bool(np.abs(delta.mean(axis=(1, 2))).max() < 1e-6)  # no colour bias
    True
    >>> bool(np.allclose(delta, delta[:, :, ::-1]))  # survives a flip
    True
    """

    def __init__(
        self,
        num_classes,
        epsilon,
        *,
        seed=0,
        fraction=1.0,
        value_range=None,
        max_frequency=3,
        random_sign=False,
    ):
        super().__init__(
            num_classes, epsilon, seed=seed, fraction=fraction, value_range=value_range
        )
        self.max_frequency = validate_int("max_frequency", max_frequency, 1)
        if not isinstance(random_sign, (bool, np.bool_)):
            raise TypeError(
                "Expected `random_sign` to be a bool. "
                f"Received: random_sign={random_sign!r}"
            )
        self.random_sign = bool(random_sign)

    def _example_plan(self, index, num_examples):
        selected = super()._example_plan(index, num_examples)
        if not self.random_sign:
            return selected
        # The coin is keyed on the example's index, so the plan carries it.
        return selected, tf.cast(index, tf.int64)

    def _rows_written(self, plan):
        return plan[0] if self.random_sign else plan

    def _poison_examples(self, x, labels, plan):
        if not self.random_sign:
            return super()._poison_examples(x, labels, plan)
        selected, index = plan
        work = compute_dtype(x.dtype)
        table = tf.cast(self._pattern_table(tuple(x.shape[1:]), x.dtype), work)
        coin = keyed_random.uniform_uint32(index, self.seed, _SIGN_STREAM)
        negative = tf.equal(tf.bitwise.bitwise_and(coin, tf.constant(1, tf.uint32)), 1)
        patterns = tf.gather(table, labels)
        row_shape = tf.concat([tf.shape(negative), tf.ones([tf.rank(x) - 1], tf.int32)], 0)
        patterns = tf.where(tf.reshape(negative, row_shape), -patterns, patterns)
        low, high = (tf.cast(b, work) for b in self._range_bounds(x.dtype))
        new = tf.cast(tf.clip_by_value(tf.cast(x, work) + patterns, low, high), x.dtype)
        return self._keep_unselected(x, new, selected), labels

    def _check_image_spec(self, image_shape, dtype):
        super()._check_image_spec(image_shape, dtype)
        self._check_spatial_images(image_shape)

    def _raw_patterns(self, image_shape):
        height, width, channels = image_shape
        frequencies = [
            (u, v)
            for u in range(self.max_frequency + 1)
            for v in range(0, self.max_frequency + 1, 2)
            if u + v >= 1
        ]
        rows = np.arange(height) + 0.5
        cols = np.arange(width) + 0.5
        basis = np.stack(
            [
                np.outer(np.cos(np.pi * u * rows / height), np.cos(np.pi * v * cols / width))
                / (u + v)
                for u, v in frequencies
            ]
        )  # (F, H, W)
        coefficients = tf.random.stateless_normal(
            (self.num_classes, channels, len(frequencies)),
            seed=[self.seed, keyed_random.PATTERN_STREAM + 2],
            dtype=tf.float64,
        ).numpy()
        smooth = np.einsum("ckf,fhw->chwk", coefficients, basis)
        # Exactly zero-mean per channel (the basis is, up to rounding).
        smooth -= smooth.mean(axis=(1, 2), keepdims=True)
        peak = np.abs(smooth).max(axis=(1, 2, 3), keepdims=True)
        return tf.constant(self.epsilon * smooth / np.maximum(peak, 1e-12), tf.float64)

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "epsilon": self.epsilon,
            "seed": self.seed,
            "fraction": self.fraction,
            "value_range": list(self.value_range) if self.value_range else None,
            "max_frequency": self.max_frequency,
            "random_sign": self.random_sign,
        }
