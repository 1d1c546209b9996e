"""Linearly separable synthetic noise (Yu, Zhang, Chen, Yin & Liu, KDD 2022).

"Availability Attacks Create Shortcuts" (arXiv 2111.00898), §5: the
perturbations of the strong availability attacks are almost linearly
separable by class, and that alone is enough: noise *synthesised* to be
separable, with no model and no optimisation, poisons as well. Their
recipe: draw one point per example from a well-separated Gaussian cluster
of its class in a small space, spread each coordinate over a patch of
pixels, and scale each example's noise to a small L2 norm.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import validate_int
from keras_poison._validation import validate_number
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import register
from keras_poison.attacks.image_shortcut import ImageShortcutAttack
from keras_poison.attacks.image_shortcut import working_float_dtype

# Draws for the cluster centres, then for each example's point.
_CENTRE_STREAM = keyed_random.PATTERN_STREAM
_POINT_STREAM = keyed_random.PATTERN_STREAM + 1


@register
class SeparableNoise(ImageShortcutAttack):
    """Adds per-example noise that is linearly separable by class (LSP).

    Following Yu et al. 2022 (§5.1, "synthetic noise"): with patches of
    `patch_size` pixels, an image of shape `(H, W, C)` has
    `d = ceil(H / p) * ceil(W / p) * C` patch values. Class `c` has a centre
    `m_c`, a random vertex of the hypercube `{-s, +s}^d` (`s` =
    `class_separation`, as scikit-learn's `make_classification` in the
    authors' code places its clusters). Example `i` of class `c` gets the
    point `z_i = m_c + g_i`, `g_i ~ N(0, I_d)`, drawn from `(seed, i)`; each
    coordinate fills one `p × p` patch of one channel, and the noise is
    scaled to the L2 norm `epsilon * sqrt(H * W * C)`, the norm of a
    uniform change of `epsilon` (the authors' projection). A poisoned
    image is `clip(x + noise_i)`, rounded to grey levels for integer images.
    Individual pixels may move by more than `epsilon`: the budget is L2.

    Differences from the reference code: the within-class covariance is the
    identity (scikit-learn also mixes each cluster by a random matrix), and
    every draw is keyed on the example's index, so the stream and the NumPy
    path agree and any subset is reproducible.

    Threat model: clean-label availability poisoning under an L2 budget,
    without access to any model. Known counters in the literature:
    grayscale and JPEG squeezing, strong augmentation, adversarial training.

    Args:
        num_classes: int >= 2, the number of classes.
        epsilon: float > 0, the per-pixel scale of the L2 budget, in the
            images' own units (e.g. `6 / 255` for floats in [0, 1], the
            paper's setting). The noise's L2 norm is
            `epsilon * sqrt(number of values per image)`.
        patch_size: int >= 1, the side of the patch each coordinate fills.
            Defaults to `8`.
        class_separation: float > 0, half the side of the centres'
            hypercube, in units of the clusters' standard deviation.
            Defaults to `10.0` (the reference code's `class_sep`).
        seed: int, the key of the centres, the points and the selection.
            Defaults to `0`.
        fraction: float in [0, 1], the share of examples poisoned.
            Defaults to `1.0`.
        value_range: `(low, high)` or `None`, the images' valid range
            (`None`: `(0, 255)` for integer images, `(0, 1)` for floats).
            Defaults to `None`.

    Example:

    >>> attack = SeparableNoise(num_classes=10, epsilon=6 / 255, seed=0)
    >>> x = np.full((20, 32, 32, 3), 0.5, "float32")
    >>> y = np.arange(20) % 10
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> norm = np.sqrt(((x_p - x) ** 2).sum(axis=(1, 2, 3)))
    >>> bool(np.allclose(norm, 6 / 255 * np.sqrt(32 * 32 * 3), rtol=1e-4))
    True
    """

    def __init__(
        self,
        num_classes,
        epsilon,
        *,
        patch_size=8,
        class_separation=10.0,
        seed=0,
        fraction=1.0,
        value_range=None,
    ):
        super().__init__(num_classes, seed=seed, fraction=fraction, value_range=value_range)
        self.epsilon = validate_number("epsilon", epsilon, low=0.0, low_open=True)
        self.patch_size = validate_int("patch_size", patch_size, 1)
        self.class_separation = validate_number(
            "class_separation", class_separation, low=0.0, low_open=True
        )

    def _grid(self, image_shape):
        height, width, channels = image_shape
        p = self.patch_size
        return -(-height // p), -(-width // p), channels

    def centres(self, image_shape):
        """The class centres `m_c`, float64 NumPy `(num_classes, d)`."""
        return self._centre_table(tuple(image_shape)).numpy()

    def _centre_table(self, image_shape):
        cache = self._table_cache("_centre_cache", dict)
        if image_shape not in cache:
            with tf.init_scope():
                dimension = int(np.prod(self._grid(image_shape)))
                signs = keyed_random.uniform_floats(
                    tf.range(self.num_classes, dtype=tf.int64), self.seed, _CENTRE_STREAM, dimension
                )
                separation = tf.constant(self.class_separation, tf.float64)
                cache[image_shape] = tf.where(signs < 0.5, -separation, separation)
        return cache[image_shape]

    def _check_image_spec(self, image_shape, dtype):
        super()._check_image_spec(image_shape, dtype)
        self._check_spatial_images(image_shape)
        if np.issubdtype(np.dtype(dtype), np.integer) and self.epsilon < 1:
            # An RMS change below one grey level rounds to no change at all.
            raise ValueError(
                f"SeparableNoise on integer images ({np.dtype(dtype)}) needs `epsilon` "
                ">= 1 grey level: the noise's per-pixel scale is `epsilon`, and less "
                "than one level rounds away. Received: "
                f"epsilon={self.epsilon}. Give it in grey levels (6 for the paper's "
                "6/255), or scale the images to floats in [0, 1]."
            )
        centres = self.centres(image_shape)
        if len(np.unique(centres, axis=0)) < self.num_classes:
            raise ValueError(
                f"SeparableNoise: images of shape {tuple(image_shape)} with "
                f"patch_size={self.patch_size} give {centres.shape[1]} patch values, "
                f"too few for {self.num_classes} distinct class centres. Use a smaller "
                "`patch_size`."
            )

    def _poison_examples(self, x, labels, plan):
        # The block's global indices are not passed here, so the plan carries them.
        selected, index = plan
        work = working_float_dtype(x.dtype)
        image_shape = tuple(x.shape[1:])
        grid = self._grid(image_shape)
        dimension = int(np.prod(grid))
        points = tf.gather(self._centre_table(image_shape), labels) + keyed_random.standard_normal(
            index, self.seed, _POINT_STREAM, dimension
        )
        height, width, channels = image_shape
        patches = tf.reshape(points, (-1, *grid))
        p = self.patch_size
        noise = tf.repeat(tf.repeat(patches, p, axis=1), p, axis=2)[:, :height, :width, :]
        budget = self.epsilon * np.sqrt(height * width * channels)
        # budget · rsqrt(Σ noise²) as written: grappler rewrites `noise * (budget /
        # sqrt(...))` inside tf.data, and the stream then differed from `poison()`
        # in the last bit of float64 images.
        scale = tf.constant(budget, tf.float64) * tf.math.rsqrt(
            tf.reduce_sum(tf.square(noise), axis=(1, 2, 3), keepdims=True)
        )
        noise = tf.cast(noise * scale, work)
        low, high = self._range_bounds(x.dtype)
        values = tf.cast(x, work) + noise
        if x.dtype.is_integer:
            values = tf.round(values)
        new = tf.cast(tf.clip_by_value(values, low, high), x.dtype)
        return self._keep_unselected(x, new, selected), labels

    def _example_plan(self, index, num_examples):
        return self._select(index, num_examples, self.fraction), tf.cast(index, tf.int64)

    def _rows_written(self, plan):
        return plan[0]

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "epsilon": self.epsilon,
            "patch_size": self.patch_size,
            "class_separation": self.class_separation,
            "seed": self.seed,
            "fraction": self.fraction,
            "value_range": list(self.value_range) if self.value_range else None,
        }
