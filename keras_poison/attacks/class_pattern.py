"""Class-wise clean-label noise: one additive pattern per class.

Seed report 000, §3.2 and Figure 3: "a unique perturbation pattern is
generated for each class, consisting of a random noise component and a
class-specific colour bias. The patterns are applied consistently across all
samples of the corresponding class", labels untouched. A model trained on the
result learns the patterns as shortcuts (training accuracy up, validation
accuracy down).
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import default_value_range
from keras_poison._validation import validate_num_classes
from keras_poison._validation import validate_rate
from keras_poison._validation import validate_value_range
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import PoisoningAttack
from keras_poison.attacks.base import register


@register
class ClassPatternNoise(PoisoningAttack):
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

    changes_images = True

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
        super().__init__(seed=seed, num_classes=validate_num_classes(num_classes))
        if isinstance(epsilon, bool) or not isinstance(
            epsilon, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"Expected `epsilon` to be a number > 0. Received: epsilon={epsilon!r}"
            )
        if not (np.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"Expected `epsilon` > 0. Received: epsilon={epsilon}")
        self.epsilon = float(epsilon)
        self.fraction = validate_rate("fraction", fraction)
        self.bias_ratio = validate_rate("bias_ratio", bias_ratio)
        self.value_range = validate_value_range("value_range", value_range)

    def resolved_value_range(self, dtype):
        """The `(low, high)` range used for images of `dtype`."""
        if self.value_range is not None:
            return self.value_range
        return default_value_range(dtype)

    def patterns(self, image_shape, dtype="float32"):
        """The per-class patterns `delta_c`, shape `(num_classes, *image_shape)`.

        Args:
            image_shape: shape of one image, e.g. `(32, 32, 3)`; a colour bias
                is drawn per channel when the shape has 3 axes, otherwise one
                bias per class.
            dtype: the images' dtype; integer dtypes get patterns rounded to
                whole steps within `floor(epsilon)`. Defaults to `"float32"`.

        Returns:
            A NumPy float array of the patterns in the images' units.
        """
        return self._pattern_table(tuple(image_shape), tf.as_dtype(dtype)).numpy()

    def _pattern_table(self, image_shape, dtype):
        """The patterns as a tensor, computed once per shape and dtype."""
        cache = self.__dict__.setdefault("_pattern_cache", {})
        key = (image_shape, dtype.name)
        if key not in cache:
            # Eager even while tf.data traces, so it is captured as a constant.
            with tf.init_scope():
                cache[key] = self._draw_patterns(image_shape, dtype)
        return cache[key]

    def _draw_patterns(self, image_shape, dtype):
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
        table = tf.reshape(table, (self.num_classes, *image_shape))
        if dtype.is_integer:
            steps = float(np.floor(self.epsilon))
            table = tf.clip_by_value(tf.round(table), -steps, steps)
        return tf.cast(table, dtype if dtype.is_floating else tf.float32)

    def _example_plan(self, index, num_examples):
        return self._select(index, num_examples, self.fraction)

    def _kernel_table(self, image_shape, dtype):
        """The patterns in the compute dtype, plus one last row that moves nothing.

        The last row is `-0.0` for float images (`v + -0.0` is `v` bit for
        bit, signed zeros included) and `0` for integer images. Examples that
        are not selected add it, so the block needs no select over its
        pixels: one pass that reads, adds, clips and writes.
        """
        cache = self.__dict__.setdefault("_kernel_cache", {})
        key = (image_shape, dtype.name)
        if key not in cache:
            with tf.init_scope():
                table = tf.cast(self._pattern_table(image_shape, dtype), _compute_dtype(dtype))
                identity = tf.zeros_like(table[:1])
                if dtype.is_floating:
                    identity = -identity
                cache[key] = tf.concat([table, identity], axis=0)
        return cache[key]

    def _clip_bounds(self, dtype):
        """`value_range` in the compute dtype; for integer images, the whole grey
        levels inside it (so a poisoned pixel never leaves the range)."""
        low, high = self.resolved_value_range(dtype)
        if dtype.is_integer:
            low, high = np.ceil(low), np.floor(high)
        compute_dtype = _compute_dtype(dtype)
        return tf.cast(low, compute_dtype), tf.cast(high, compute_dtype)

    def _poison_examples(self, x, labels, plan):
        table = self._kernel_table(tuple(x.shape[1:]), x.dtype)
        # Unselected examples take the last row, which leaves them as they are.
        rows = tf.where(plan, labels, self.num_classes)
        low, high = self._clip_bounds(x.dtype)
        if x.dtype.is_floating:
            # A clip may turn -0.0 into +0.0 at a bound of 0 (which zero
            # `maximum` returns for equal zeros depends on the CPU), so
            # unselected rows are clipped to (-inf, inf) instead: unchanged.
            row_shape = tf.concat([tf.shape(plan), tf.ones([tf.rank(x) - 1], tf.int32)], 0)
            selected = tf.reshape(plan, row_shape)
            low = tf.where(selected, low, tf.constant(-np.inf, x.dtype))
            high = tf.where(selected, high, tf.constant(np.inf, x.dtype))
        compute_dtype = _compute_dtype(x.dtype)
        shifted = tf.cast(x, compute_dtype) + tf.gather(table, rows)
        return tf.cast(tf.clip_by_value(shifted, low, high), x.dtype), labels

    def _check_image_spec(self, image_shape, dtype):
        dtype = np.dtype(dtype)
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise TypeError(
                f"Expected integer or floating-point images. Received: images of dtype {dtype}"
            )
        if any(d is None for d in image_shape):
            raise ValueError(
                "ClassPatternNoise needs images of a known, fixed shape. "
                f"Received: image shape {tuple(image_shape)}; resize images first."
            )
        if np.issubdtype(dtype, np.integer) and self.epsilon < 1:
            raise ValueError(
                f"Expected `epsilon` >= 1 for integer images ({dtype}): a "
                f"smaller budget cannot move a pixel. Received: epsilon={self.epsilon}. "
                "Give `epsilon` in grey levels (e.g. 16 for 16/255), or scale "
                "the images to floats in [0, 1] first."
            )

    def _image_checks(self, x):
        low, high = self.resolved_value_range(x.dtype)
        if x.dtype.is_integer:
            # Compared in the images' own dtype, against the whole grey levels
            # inside the range; a bound beyond the dtype's own cannot fail.
            lowest, highest = np.ceil(low), np.floor(high)
            checks = []
            if lowest > x.dtype.min:
                checks.append(tf.reduce_all(x >= tf.cast(lowest, x.dtype)))
            if highest < x.dtype.max:
                checks.append(tf.reduce_all(x <= tf.cast(highest, x.dtype)))
            inside = tf.reduce_all(tf.stack(checks)) if checks else None
        else:
            inside = tf.logical_and(
                tf.reduce_all(x >= tf.cast(low, x.dtype)),
                tf.reduce_all(x <= tf.cast(high, x.dtype)),
            )
        if inside is None:
            return []  # every value of the dtype is inside the range
        message = (
            f"Expected images in value_range=({low:g}, {high:g}); received a "
            "pixel outside it. Pass `value_range` to ClassPatternNoise for "
            "images in another range."
        )
        return [(inside, message)]

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "epsilon": self.epsilon,
            "seed": self.seed,
            "fraction": self.fraction,
            "value_range": list(self.value_range) if self.value_range else None,
            "bias_ratio": self.bias_ratio,
        }


def _compute_dtype(dtype):
    """Floats keep their precision; integer images are computed in a wider
    signed integer, exactly (float32 would round pixels above 2**24)."""
    dtype = tf.as_dtype(dtype)
    if dtype.is_floating:
        return dtype
    return tf.int32 if dtype.size <= 2 else tf.int64
