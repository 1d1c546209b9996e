"""The one-pixel shortcut: OPS (Wu, Chen, Xie & Huang, ICLR 2023).

"One-Pixel Shortcut: on the learning preference of deep neural networks"
(arXiv 2205.12141), §3: every training image of class `c` gets one pixel,
at a place chosen for the class, set to one corner of the colour cube. The
place and colour are searched so that they differ as much, and as
consistently, as possible from that pixel in the class's clean images
(their Algorithm 1), which makes the pixel the easiest feature to learn.
One pixel is an L0 budget of 1: nothing an L-infinity or L2 defence bounds.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import to_class_indices
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import register
from keras_poison.attacks.image_shortcut import ImageShortcutAttack

# 2**channels colours are scored per pixel; beyond this the search is not
# a colour-cube search any more.
_MAX_CHANNELS = 8
_SEARCH_CHUNK = 1024


@register
class OnePixelShortcut(ImageShortcutAttack):
    """Sets one pixel per class to one corner of the colour cube (OPS).

    Class `c` owns a pixel `(row_c, col_c)` and a colour `b_c` in
    `{0, 1}^channels` (each channel at the low or the high end of the
    value range). Each selected image of class `c` gets that pixel set to
    that colour; nothing else changes, labels included. The mask marks the
    images that changed: a selected image whose pixel already had its
    class's colour is left out of it, so the mask may count fewer than the
    `round(fraction * n)` images selected.

    `OnePixelShortcut.search(x, y, num_classes)` finds the pixels as the
    paper's Algorithm 1 does (Wu et al. 2023, §3.2 and Eq. 2): for each
    class in turn, the place and colour maximising

        mean(|b - x_p|) / std(|b - x_p|)

    over the class's images and channels (a large and consistent change),
    a pair already taken by an earlier class excluded. Without a search the
    pixels are drawn from `seed` (distinct places, random colours).

    Threat model: clean-label availability poisoning with an L0 budget of
    one pixel per image. Norm-bounded defences do not bound it; median
    filtering, random crops and JPEG/grayscale squeezing are the usual
    counters.

    Args:
        num_classes: int >= 2, the number of classes.
        pixels: `None`, or one `(row, col, colour)` per class with `colour`
            a sequence of 0/1 per channel. `None` draws them from `seed`
            for the images' shape. Defaults to `None`.
        seed: int, the key of the drawn pixels and of the selection.
            Defaults to `0`.
        fraction: float in [0, 1], the share of examples changed.
            Defaults to `1.0`.
        value_range: `(low, high)` or `None`, the images' valid range
            (`None`: `(0, 255)` for integer images, `(0, 1)` for floats).
            Defaults to `None`.

    Example:

    >>> x = np.random.default_rng(0).uniform(size=(40, 8, 8, 3)).astype("float32")
    >>> y = np.arange(40) % 4
    >>> attack = OnePixelShortcut.search(x, y, num_classes=4)
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> int((x_p != x).any(axis=-1).sum(axis=(1, 2)).max())  # one pixel each
    1
    >>> row, col, colour = attack.pixels[0]
    >>> bool(np.all(x_p[y == 0][:, row, col] == colour))
    True
    """

    def __init__(self, num_classes, *, pixels=None, seed=0, fraction=1.0, value_range=None):
        super().__init__(num_classes, seed=seed, fraction=fraction, value_range=value_range)
        self.pixels = None if pixels is None else self._validate_pixels(pixels)

    def _validate_pixels(self, pixels):
        try:
            entries = [(int(r), int(c), tuple(int(b) for b in colour)) for r, c, colour in pixels]
        except (TypeError, ValueError):
            raise TypeError(
                "Expected `pixels` to be one (row, col, colour) per class, colour "
                f"a sequence of 0/1 per channel. Received: pixels={pixels!r}"
            ) from None
        if len(entries) != self.num_classes:
            raise ValueError(
                f"Expected one pixel per class ({self.num_classes}). "
                f"Received: {len(entries)} pixels"
            )
        widths = {len(colour) for _, _, colour in entries}
        if len(widths) != 1 or any(b not in (0, 1) for _, _, col in entries for b in col):
            raise ValueError(
                "Expected every colour of `pixels` to hold one 0 or 1 per channel. "
                f"Received: pixels={pixels!r}"
            )
        if any(r < 0 or c < 0 for r, c, _ in entries):
            raise ValueError(f"Expected `pixels` at rows and columns >= 0. Received: pixels={pixels!r}")
        return entries

    # ------------------------------------------------------------------
    # Algorithm 1.

    @classmethod
    def search(cls, x, y, num_classes, *, seed=0, fraction=1.0, value_range=None):
        """An attack whose pixels are found by OPS's search on `(x, y)`.

        Args:
            x: clean training images `(n, height, width, channels)`.
            y: their labels, sparse, a column or one-hot.
            num_classes: int >= 2.
            seed: int, the key of the selection. Defaults to `0`.
            fraction: float in [0, 1]. Defaults to `1.0`.
            value_range: the images' range, as for the constructor.

        Returns:
            A `OnePixelShortcut` with `pixels` set.
        """
        attack = cls(num_classes, seed=seed, fraction=fraction, value_range=value_range)
        x = np.asarray(x)
        labels, _ = to_class_indices(y, "y")
        if x.ndim != 4 or len(x) != len(labels):
            raise ValueError(
                "Expected `x` of shape (n, height, width, channels) and one label per "
                f"image. Received: x.shape={x.shape}, {len(labels)} labels"
            )
        attack._check_image_spec(x.shape[1:], x.dtype)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"Expected labels in [0, {num_classes}). Received: labels in "
                f"[{labels.min()}, {labels.max()}]"
            )
        low, high = attack._range_bounds(tf.as_dtype(x.dtype))
        if x.size and (x.min() < low or x.max() > high):
            raise ValueError(
                f"Expected images in value_range=({low:g}, {high:g}). Received: values "
                f"in [{x.min():g}, {x.max():g}]; pass `value_range`."
            )
        height, width, channels = x.shape[1:]
        # Per class, per pixel and channel: count, sum and sum of squares of
        # the images in range units; |b - u| is u for b = 0 and 1 - u for b = 1.
        sums = np.zeros((num_classes, height, width, channels))
        squares = np.zeros_like(sums)
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        for start in range(0, len(x), _SEARCH_CHUNK):
            unit = (x[start : start + _SEARCH_CHUNK].astype(np.float64) - low) / (high - low)
            chunk_labels = labels[start : start + _SEARCH_CHUNK]
            np.add.at(sums, chunk_labels, unit)
            np.add.at(squares, chunk_labels, unit**2)
        colours = np.array(
            [[(v >> (channels - 1 - k)) & 1 for k in range(channels)] for v in range(2**channels)]
        )  # (V, C), the corners of the colour cube
        taken = set()
        pixels = []
        for c in range(num_classes):
            n = counts[c]
            if n == 0:
                raise ValueError(
                    f"Expected images of every class to search its pixel. Received: "
                    f"no image of class {c}"
                )
            # Sums of |b - u| and |b - u|**2 over the class's images, per colour.
            first = np.where(colours[:, None, None, :], n - sums[c][None], sums[c][None])
            second = np.where(
                colours[:, None, None, :], n - 2 * sums[c][None] + squares[c][None], squares[c][None]
            )
            total = n * channels
            mean = first.sum(-1) / total
            variance = np.maximum(second.sum(-1) / total - mean**2, 0.0)
            score = mean / np.maximum(np.sqrt(variance), 1e-12)  # (V, H, W)
            for taken_pair in taken:
                score[taken_pair] = -np.inf
            v, r, col = np.unravel_index(np.argmax(score), score.shape)
            taken.add((v, r, col))
            pixels.append((int(r), int(col), tuple(int(b) for b in colours[v])))
        attack.pixels = pixels
        return attack

    # ------------------------------------------------------------------

    def resolved_pixels(self, image_shape):
        """The `(row, col, colour)` of each class for images of `image_shape`."""
        height, width, channels = image_shape
        if self.pixels is not None:
            return self.pixels
        places = keyed_random.permuted_positions(
            tf.range(self.num_classes, dtype=tf.int64),
            height * width - 1,
            self.seed,
            keyed_random.PATTERN_STREAM,
        ).numpy()
        bits = tf.random.stateless_uniform(
            (self.num_classes, channels),
            seed=[self.seed, keyed_random.PATTERN_STREAM + 1],
            maxval=2,
            dtype=tf.int32,
        ).numpy()
        return [
            (int(p // width), int(p % width), tuple(int(b) for b in bits[c]))
            for c, p in enumerate(places)
        ]

    def _check_image_spec(self, image_shape, dtype):
        super()._check_image_spec(image_shape, dtype)
        self._check_spatial_images(image_shape)
        height, width, channels = image_shape
        if channels > _MAX_CHANNELS:
            raise ValueError(
                f"OnePixelShortcut colours pixels at corners of the colour cube, for "
                f"images of at most {_MAX_CHANNELS} channels. Received: {channels} channels"
            )
        if height * width < self.num_classes and self.pixels is None:
            raise ValueError(
                f"Expected at least num_classes={self.num_classes} pixels per image to "
                f"give each class its own. Received: image shape {tuple(image_shape)}"
            )
        if self.pixels is not None:
            for row, col, colour in self.pixels:
                if row >= height or col >= width or len(colour) != channels:
                    raise ValueError(
                        f"Expected `pixels` inside images of shape {tuple(image_shape)}. "
                        f"Received: pixel (row={row}, col={col}, colour={colour})"
                    )

    def _pixel_table(self, image_shape, dtype):
        """`(places, colours)`: int32 `(K, 2)` and the colours `(K, C)` in `dtype`."""
        cache = self._table_cache("_pixel_cache", dict)
        key = (image_shape, dtype.name)
        if key not in cache:
            with tf.init_scope():
                pixels = self.resolved_pixels(image_shape)
                low, high = self._range_bounds(dtype)
                places = tf.constant([(r, c) for r, c, _ in pixels], tf.int32)
                bits = np.array([colour for _, _, colour in pixels], np.float64)
                colours = tf.cast(low + bits * (high - low), dtype)
                cache[key] = (places, colours)
        return cache[key]

    def _poison_examples(self, x, labels, plan):
        places, colours = self._pixel_table(tuple(x.shape[1:]), x.dtype)
        rows = tf.cast(tf.where(plan)[:, 0], tf.int32)  # the selected examples
        classes = tf.gather(labels, rows)
        channels = x.shape[-1]
        place = tf.gather(places, classes)  # (S, 2)
        # One (row of the block, pixel row, pixel col, channel) per value written.
        index = tf.concat(
            [
                tf.repeat(tf.stack([rows, place[:, 0], place[:, 1]], axis=1), channels, axis=0),
                tf.reshape(tf.tile(tf.range(channels)[None, :], [tf.shape(rows)[0], 1]), (-1, 1)),
            ],
            axis=1,
        )
        updates = tf.reshape(tf.gather(colours, classes), (-1,))
        return tf.tensor_scatter_nd_update(x, index, updates), labels

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "pixels": None
            if self.pixels is None
            else [[r, c, list(colour)] for r, c, colour in self.pixels],
            "seed": self.seed,
            "fraction": self.fraction,
            "value_range": list(self.value_range) if self.value_range else None,
        }
