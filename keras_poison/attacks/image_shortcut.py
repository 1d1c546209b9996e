"""What the clean-label shortcut attacks share: images rewritten inside a range.

The availability attacks of the unlearnable-examples literature leave labels
alone and change the images of a chosen share of the training set so that a
model learns an easy, class-correlated feature (a shortcut) instead of the
objects. They differ only in how an image is rewritten (an added pattern, a
class-wise blur, one pixel, synthetic noise). This base class holds the rest:
which examples are rewritten (`fraction`, by the keyed permutation every
attack uses), the images' valid range and the checks on it, and the mask,
which compares only the rewritten rows.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import bounds_inside
from keras_poison._validation import default_value_range
from keras_poison._validation import validate_num_classes
from keras_poison._validation import validate_rate
from keras_poison._validation import validate_value_range
from keras_poison.attacks.base import PoisoningAttack


class ImageShortcutAttack(PoisoningAttack):
    """Base class of the clean-label attacks that rewrite images within a range.

    Subclasses implement `_poison_examples` (rows not in the plan must come
    back bit-identical) and `get_config`, and may extend
    `_check_image_spec`.

    Args:
        num_classes: int >= 2, the number of classes.
        seed: int, the key of the selection and of every random draw.
        fraction: float in [0, 1], the share of examples rewritten, exactly
            `round(fraction * n)` of them.
        value_range: `(low, high)` or `None`, the images' valid range.
            `None` means `(0, 255)` for integer images and `(0, 1)` for
            floating-point images.
    """

    changes_images = True

    def __init__(self, num_classes, *, seed=0, fraction=1.0, value_range=None):
        super().__init__(seed=seed, num_classes=validate_num_classes(num_classes))
        self.fraction = validate_rate("fraction", fraction)
        self.value_range = validate_value_range("value_range", value_range)

    def resolved_value_range(self, dtype):
        """The `(low, high)` range used for images of `dtype`."""
        if self.value_range is not None:
            return self.value_range
        return default_value_range(dtype)

    def _example_plan(self, index, num_examples):
        return self._select(index, num_examples, self.fraction)

    def _rows_written(self, plan):
        return plan

    def _check_image_spec(self, image_shape, dtype):
        dtype = np.dtype(dtype)
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise TypeError(
                f"Expected integer or floating-point images. Received: images of dtype {dtype}"
            )
        if any(d is None for d in image_shape):
            raise ValueError(
                f"{type(self).__name__} needs images of a known, fixed shape. "
                f"Received: image shape {tuple(image_shape)}; resize images first."
            )
        if np.issubdtype(dtype, np.integer):
            # Clipping to a range the dtype cannot hold, then casting, would
            # wrap (256 → 0 in uint8) or saturate: pixels the attack never wrote.
            low, high = self.resolved_value_range(dtype)
            info = np.iinfo(dtype)
            if np.ceil(low) < info.min or np.floor(high) > info.max:
                raise ValueError(
                    f"Expected a `value_range` that {dtype} images can hold, inside "
                    f"[{info.min}, {info.max}]. Received: value_range=({low:g}, {high:g})"
                    + ("" if self.value_range is not None else " (the default for integer images)")
                    + f" for {dtype} images; pass `value_range` to {type(self).__name__}."
                )

    def _check_spatial_images(self, image_shape):
        """Raises unless images are `(height, width, channels)`."""
        if len(image_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} works on images of shape (height, width, "
                f"channels). Received: image shape {tuple(image_shape)}; reshape "
                "flat or channel-less images first."
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
            f"pixel outside it. Pass `value_range` to {type(self).__name__} for "
            "images in another range."
        )
        return [(inside, message)]

    def _range_bounds(self, dtype):
        """`(low, high)` as Python floats the images' dtype can hold inside the
        range (whole grey levels for integers), so a rewritten pixel never leaves it."""
        return bounds_inside(self.resolved_value_range(dtype), dtype)

    def _to_unit(self, x):
        """Images as floats in [0, 1] of their range, in the working dtype."""
        work = working_float_dtype(x.dtype)
        low, high = self._range_bounds(x.dtype)
        return (tf.cast(x, work) - low) / (high - low)

    def _from_unit(self, unit, dtype):
        """Floats in [0, 1] back to images of `dtype`, clipped to the range
        (whole grey levels for integer images)."""
        low, high = self._range_bounds(dtype)
        values = low + tf.clip_by_value(unit, 0.0, 1.0) * (high - low)
        if tf.as_dtype(dtype).is_integer:
            values = tf.round(values)
        return tf.cast(tf.clip_by_value(values, low, high), dtype)

    @staticmethod
    def _keep_unselected(x, x_new, plan):
        """`x_new` on the selected rows, `x` (bit for bit) on the others."""
        row_shape = tf.concat([tf.shape(plan), tf.ones([tf.rank(x) - 1], tf.int32)], 0)
        return tf.where(tf.reshape(plan, row_shape), x_new, x)


def compute_dtype(dtype):
    """The dtype exact arithmetic on images of `dtype` is done in.

    Floats keep their precision; integer images are computed in a wider
    signed integer, exactly (float32 would round pixels above 2**24).
    """
    dtype = tf.as_dtype(dtype)
    if dtype.is_floating:
        return dtype
    return tf.int32 if dtype.size <= 2 else tf.int64


def working_float_dtype(dtype):
    """The float dtype filters and noise are computed in for images of `dtype`:
    float64 for float64 and wide integers, float32 otherwise (exact for 8- and
    16-bit grey levels)."""
    dtype = tf.as_dtype(dtype)
    if dtype == tf.float64 or (dtype.is_integer and dtype.size >= 4):
        return tf.float64
    return tf.float32
