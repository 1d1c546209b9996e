"""Class-wise convolution filters: CUDA (Sadasivan, Soltanolkotabi & Feizi, CVPR 2023).

"CUDA: Convolution-based Unlearnable Datasets" (arXiv 2303.04278), §3:
every image of class `c` is convolved with one random filter `H_c` drawn for
that class, so the blur itself becomes the class's shortcut. The noise is
multiplicative and has no norm bound, which is why the additive-noise
defences (adversarial training at small radii, pattern removal) do not undo
it.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import validate_int
from keras_poison._validation import validate_number
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import register
from keras_poison.attacks.image_shortcut import ImageShortcutAttack
from keras_poison.attacks.image_shortcut import working_float_dtype


@register
class ClassConvolution(ImageShortcutAttack):
    """Convolves every image of a class with that class's random filter (CUDA).

    For class `c` the filter is a `kernel_size × kernel_size` kernel with
    entries uniform in `[0, blur)` and one entry, at a random place, set to
    `1` (the paper's "blur parameter" `p_b` and its reference code's centre
    weight). The same kernel filters every channel (a depthwise
    convolution in the deep-learning sense, zero padding: `*` below is a
    cross-correlation, the kernel not flipped, as `tf.nn.depthwise_conv2d`
    and the authors' `Conv2d` compute it; `filters()` are the kernels as
    applied). A poisoned image, in units of its range
    `u = (x - low) / (high - low)`, is

        u' = clip((H_y * u) / max(H_y * u), 0, 1)

    the filtered image divided by its own largest value (over pixels and
    channels; an all-zero image stays zero), as in the authors' code. For
    integer images the result is rounded to whole grey levels. Labels are
    untouched; `fraction` of the examples (exactly `round(fraction * n)`,
    the keyed selection of every attack) are filtered, the paper's "mix".

    Threat model: clean-label availability poisoning of the whole training
    set (or a share) by its owner, with no norm budget. Known to survive
    adversarial training and the additive-noise defences; the paper reports
    deconvolution-based adversarial training as partly effective, and later
    work sharpening and frequency filtering.

    Args:
        num_classes: int >= 2, the number of classes.
        blur: float >= 0, the upper bound `p_b` of the filters' random
            entries (larger is blurrier). Defaults to `0.3`, the paper's
            CIFAR-10 setting.
        kernel_size: odd int >= 1, the filters' size. Defaults to `3`.
        seed: int, the key of the filters and of the selection.
            Defaults to `0`.
        fraction: float in [0, 1], the share of examples filtered.
            Defaults to `1.0`.
        value_range: `(low, high)` or `None`, the images' valid range
            (`None`: `(0, 255)` for integer images, `(0, 1)` for floats).
            Defaults to `None`.

    Example:

    >>> attack = ClassConvolution(num_classes=10, blur=0.3, seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(20, 32, 32, 3)).astype("float32")
    >>> y = np.arange(20) % 10
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> attack.filters().shape, bool(mask.all()), bool(np.all(y_p == y))
    ((10, 3, 3), True, True)
    >>> float(x_p.max()) <= 1.0
    True
    """

    def __init__(
        self,
        num_classes,
        *,
        blur=0.3,
        kernel_size=3,
        seed=0,
        fraction=1.0,
        value_range=None,
    ):
        super().__init__(num_classes, seed=seed, fraction=fraction, value_range=value_range)
        self.blur = validate_number("blur", blur, low=0.0)
        self.kernel_size = validate_int("kernel_size", kernel_size, 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"Expected an odd `kernel_size`. Received: kernel_size={kernel_size}"
            )

    def filters(self):
        """The class filters `H_c`, a float64 NumPy array `(num_classes, k, k)`."""
        return self._filter_table().numpy()

    def _filter_table(self):
        cache = self._table_cache("_filter_cache", list)
        if not cache:
            with tf.init_scope():  # a constant, even while tf.data traces
                k = self.kernel_size
                entries = tf.random.stateless_uniform(
                    (self.num_classes, k * k),
                    seed=[self.seed, keyed_random.PATTERN_STREAM],
                    minval=0.0,
                    maxval=self.blur,
                    dtype=tf.float64,
                )
                place = tf.random.stateless_uniform(
                    (self.num_classes,),
                    seed=[self.seed, keyed_random.PATTERN_STREAM + 1],
                    maxval=k * k,
                    dtype=tf.int32,
                )
                entries = tf.where(tf.one_hot(place, k * k) > 0, 1.0, entries)
                cache.append(tf.reshape(entries, (self.num_classes, k, k)))
        return cache[0]

    def _check_image_spec(self, image_shape, dtype):
        super()._check_image_spec(image_shape, dtype)
        self._check_spatial_images(image_shape)

    def _poison_examples(self, x, labels, plan):
        work = working_float_dtype(x.dtype)
        unit = self._to_unit(x)  # (B, H, W, C)
        height, width, channels = x.shape[1:]
        batch = tf.shape(x)[0]
        kernels = tf.cast(tf.gather(self._filter_table(), labels), work)  # (B, k, k)
        # One depthwise convolution filters every example with its own
        # class's kernel: examples and channels side by side as channels.
        k = self.kernel_size
        stacked = tf.reshape(tf.transpose(unit, (1, 2, 0, 3)), (1, height, width, -1))
        depthwise = tf.repeat(tf.transpose(kernels, (1, 2, 0)), channels, axis=-1)
        filtered = tf.nn.depthwise_conv2d(
            stacked, tf.reshape(depthwise, (k, k, -1, 1)), strides=[1, 1, 1, 1], padding="SAME"
        )
        filtered = tf.transpose(
            tf.reshape(filtered, (height, width, batch, channels)), (2, 0, 1, 3)
        )
        peak = tf.reduce_max(filtered, axis=(1, 2, 3), keepdims=True)
        normalized = tf.math.divide_no_nan(filtered, peak)
        return self._keep_unselected(x, self._from_unit(normalized, x.dtype), plan), labels

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "blur": self.blur,
            "kernel_size": self.kernel_size,
            "seed": self.seed,
            "fraction": self.fraction,
            "value_range": list(self.value_range) if self.value_range else None,
        }
