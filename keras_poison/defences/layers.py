"""Defence layers that a user puts in front of their model.

* `ImageAugmentation`: the seed report's brightness, contrast and flip.
* `ColourCentering`: removes each image's mean colour (class colour biases).
* `ShortcutSqueezing`: grayscale and JPEG compression (Liu et al. 2023).
* `SharpeningFrequencyFilter`: random sharpening and DCT low-pass filtering
  (Kim & Sandoval-Segura 2024), against class-wise blurs.

All are registered with Keras when `keras_poison` is imported: a model that
uses them loads from `.keras` after `import keras_poison`.
"""

import keras
import numpy as np

from keras_poison._validation import validate_number
from keras_poison._validation import validate_value_range


@keras.saving.register_keras_serializable(package="keras_poison")
class ImageAugmentation(keras.layers.Layer):
    """The seed report's augmentation: brightness, contrast, horizontal flip.

    Seed report 000, §4.1: "small random adjustments in brightness and
    contrast, and horizontal flipping of the input images", applied in that
    order during training. The layer is made of Keras' own
    `RandomBrightness`, `RandomContrast` and `RandomFlip("horizontal")`, so it
    is the identity at inference (`training=False`) and runs inside the model
    on whatever device trains it.

    `translation` adds random shifts (Keras' `RandomTranslation`, edges
    reflected) after those three: the usual CIFAR augmentation of pad-and-crop
    by a few pixels, which the seed did not use. It is off by default, so the
    default layer is the seed's. Shifts slow learning: on our CIFAR-10 subset
    a VGG-like model with shifts of 4 pixels was still climbing after 30
    epochs, 3.5 points below the same model without them (docs/benchmarks.md,
    §5); give it more epochs.

    Args:
        brightness: float in [0, 1], the largest brightness shift as a
            fraction of the value range (`RandomBrightness(factor)`).
            `0` turns it off. Defaults to `0.1`.
        contrast: float in [0, 1], the largest contrast change
            (`RandomContrast(factor)`). `0` turns it off. Defaults to `0.1`.
        horizontal_flip: bool, whether to flip left-right at random.
            Defaults to `True`.
        translation: float in [0, 1), the largest shift as a fraction of
            the height and of the width (`0.125` is 4 pixels of a 32x32
            image). `0` turns it off. Defaults to `0`.
        value_range: `(low, high)` of the input images; outputs stay
            inside it. Defaults to `(0, 1)`, the range of the library's
            loaders and models (Keras' `RandomBrightness` defaults to
            `(0, 255)`); pass `(0, 255)` for unscaled images. Every training
            batch is checked against it: values outside it, or a range
            with `high > 1` fed images that all lie in [0, 1] (images
            scaled to [0, 1] under a 0-255 range), raise an error instead
            of being clipped or shifted by 255 times too much.
        seed: int or `None`, seeds the three random layers. Defaults to
            `None`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> augment = ImageAugmentation(seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")
    >>> bool(np.array_equal(augment(x, training=False), x))
    True
    >>> y = keras.ops.convert_to_numpy(augment(x, training=True))
    >>> y.shape, bool(np.all((y >= 0) & (y <= 1)))
    ((4, 8, 8, 3), True)
    """

    def __init__(
        self,
        brightness=0.1,
        contrast=0.1,
        horizontal_flip=True,
        value_range=(0, 1),
        seed=None,
        translation=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.brightness = validate_number("brightness", brightness, low=0.0, high=1.0)
        self.contrast = validate_number("contrast", contrast, low=0.0, high=1.0)
        if not isinstance(horizontal_flip, bool):
            raise TypeError(
                "Expected `horizontal_flip` to be a bool. "
                f"Received: horizontal_flip={horizontal_flip!r}"
            )
        self.horizontal_flip = horizontal_flip
        self.translation = validate_number(
            "translation", translation, low=0.0, high=1.0, high_open=True
        )
        if value_range is None:
            raise TypeError(
                "Expected `value_range` to be a pair (low, high). Received: value_range=None"
            )
        self.value_range = validate_value_range("value_range", value_range)
        self.seed = seed
        # Distinct seeds so the draws are not correlated.
        seeds = [None if seed is None else seed + offset for offset in range(4)]
        self._steps = []
        if self.brightness > 0:
            self._steps.append(
                keras.layers.RandomBrightness(
                    self.brightness, value_range=self.value_range, seed=seeds[0]
                )
            )
        if self.contrast > 0:
            self._steps.append(
                keras.layers.RandomContrast(
                    self.contrast, value_range=self.value_range, seed=seeds[1]
                )
            )
        if self.horizontal_flip:
            self._steps.append(keras.layers.RandomFlip("horizontal", seed=seeds[2]))
        if self.translation > 0:
            self._steps.append(
                keras.layers.RandomTranslation(
                    self.translation, self.translation, fill_mode="reflect", seed=seeds[3]
                )
            )

    def build(self, input_shape):
        _check_image_batch(input_shape, "ImageAugmentation")
        for step in self._steps:
            step.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        _check_image_batch(inputs.shape, "ImageAugmentation")
        if training and self._steps:
            inputs = _checked_range(inputs, self.value_range, "ImageAugmentation")
        outputs = inputs
        for step in self._steps:
            outputs = step(outputs, training=training)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "brightness": self.brightness,
                "contrast": self.contrast,
                "horizontal_flip": self.horizontal_flip,
                "translation": self.translation,
                "value_range": list(self.value_range),
                "seed": self.seed,
            }
        )
        return config


def _check_image_batch(shape, caller):
    """Refuses anything but `(batch, height, width, channels)`.

    A rank-3 input is ambiguous: Keras' random layers read it as one image
    `(H, W, C)`, so a batch of grayscale images `(B, H, W)` would get one
    random draw for the whole batch, flipped along the wrong axis, and the
    per-image mean would be taken across the batch.
    """
    try:
        rank = None if shape is None else len(shape)
    except (TypeError, ValueError):  # a tensor of unknown rank: nothing to check yet
        rank = None
    if rank is not None and rank != 4:
        raise ValueError(
            f"{caller} works on batches of images (batch, height, width, channels). "
            f"Received: input shape {tuple(shape)}. Give grayscale images a channel "
            "axis (`x[..., None]`, or `keras.Input((H, W, 1))`) and a single image a "
            "batch axis."
        )


def _checked_range(inputs, value_range, caller):
    """`inputs`, after an assertion that they lie in `value_range`.

    Also refuses a 0-255 range for a batch whose values all lie in (0, 1]:
    such images were scaled to [0, 1], and a 0-255 augmentation would
    shift them by 255 times too much. (A whole batch of 0-255 photographs
    darker than one grey level does not occur.)
    """
    import tensorflow as tf  # the checks are graph assertions (TF backend)

    low, high = value_range
    values = tf.convert_to_tensor(inputs)
    smallest = tf.cast(tf.reduce_min(values), tf.float32)
    largest = tf.cast(tf.reduce_max(values), tf.float32)
    inside = tf.logical_and(smallest >= low, largest <= high)
    hint = f"Pass the images' range as `value_range` (now {tuple(value_range)})."
    checks = [
        tf.debugging.Assert(
            inside,
            [f"{caller}: expected images in value_range={tuple(value_range)}; "
             "received values from", smallest, "to", largest, hint],
        )
    ]
    if high > 1:
        scaled = tf.logical_and(largest <= 1.0, largest > 0.0)
        checks.append(
            tf.debugging.Assert(
                tf.logical_not(scaled),
                [f"{caller}: value_range={tuple(value_range)} but every value of "
                 "the batch lies in (0, 1]: the images look scaled to [0, 1]. "
                 "Pass value_range=(0, 1).", largest],
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(values)


@keras.saving.register_keras_serializable(package="keras_poison")
class ColourCentering(keras.layers.Layer):
    """Subtracts each image's mean colour, per channel, in training and inference.

    A class-wise colour bias (seed report 000, §3.2: the "class-specific
    colour bias" of the clean-label attack) is the same constant added to
    every pixel of an image; removing each image's own mean per channel
    removes any such constant exactly (up to clipping), whatever its value,
    while the image's structure is kept. Unlike an augmentation it also runs
    at inference, so training and test images are treated alike. The price
    is the image's overall colour cast, which the model no longer sees.
    Pair it with `ClassPatternRemoval`, which removes the fine-grained part
    of class patterns but cannot tell a colour bias from a class's natural
    colour.

    Args:
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> layer = ColourCentering()
    >>> x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype("float32")
    >>> shifted = x + np.array([0.1, -0.05, 0.02], "float32")  # a colour bias
    >>> np.allclose(layer(x), layer(shifted), atol=1e-6)
    True
    """

    def build(self, input_shape):
        _check_image_batch(input_shape, "ColourCentering")
        self.built = True

    def call(self, inputs):
        inputs = keras.ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        _check_image_batch(inputs.shape, "ColourCentering")
        return inputs - keras.ops.mean(inputs, axis=(-3, -2), keepdims=True)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_poison")
class ShortcutSqueezing(keras.layers.Layer):
    """Image shortcut squeezing: grayscale, and JPEG compression in training.

    Liu, Zhao & Larson, "Image Shortcut Squeezing: Countering Perturbative
    Availability Poisons with Compression" (ICML 2023): the shortcuts of
    availability attacks live in colour and in fine detail, so simple
    compression of the training images removes them. Grayscale squeezes the
    colour dimension (their counter to low-norm and colour-coded
    perturbations); JPEG at a low quality (their 10) squeezes the fine
    detail (their counter to L-infinity noise).

    Grayscale is applied in training *and* inference, with the gray value
    copied to every channel so the model's input shape is unchanged: the
    model then sees gray images throughout. JPEG is applied only in
    training (`training=True`); test images are clean and pass through.
    Images with one channel skip the grayscale step. JPEG runs per image
    on the CPU (TensorFlow's codec), so put the layer in front of the model
    or map it over the training stream.

    Threat model and known failures: it removes what compression removes,
    colour and high spatial frequencies. The luminance of a low-frequency
    perturbation survives: of `SmoothClassPattern`'s gray component JPEG at
    quality 10 keeps about 0.8, of `ClassPatternNoise`'s about 0.3 (see
    `tests/defences/test_layers_and_recipes.py`); blurs such as
    `ClassConvolution` are low-frequency by construction. Its cost on clean
    data is the colour and the detail it removes (docs/benchmarks.md).

    Args:
        grayscale: bool, whether to convert images to gray. Defaults to
            `True`.
        jpeg_quality: int in [0, 100] or `None`, the JPEG quality of the
            training-time compression; `None` turns it off. Defaults to
            `10`.
        value_range: `(low, high)` of the input images. Defaults to
            `(0, 1)`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> squeeze = ShortcutSqueezing(grayscale=True, jpeg_quality=10)
    >>> x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    >>> gray = keras.ops.convert_to_numpy(squeeze(x, training=False))
    >>> bool(np.allclose(gray[..., 0], gray[..., 2]))  # one gray value per pixel
    True
    >>> trained = keras.ops.convert_to_numpy(squeeze(x, training=True))
    >>> trained.shape, bool(np.abs(trained - gray).max() > 0)  # JPEG in training only
    ((2, 8, 8, 3), True)
    """

    def __init__(self, grayscale=True, jpeg_quality=10, value_range=(0, 1), **kwargs):
        super().__init__(**kwargs)
        if not isinstance(grayscale, (bool, np.bool_)):
            raise TypeError(
                f"Expected `grayscale` to be a bool. Received: grayscale={grayscale!r}"
            )
        self.grayscale = bool(grayscale)
        if jpeg_quality is not None:
            if isinstance(jpeg_quality, (bool, np.bool_)) or not isinstance(
                jpeg_quality, (int, np.integer)
            ):
                raise TypeError(
                    "Expected `jpeg_quality` to be an int in [0, 100] or None. "
                    f"Received: jpeg_quality={jpeg_quality!r}"
                )
            jpeg_quality = int(jpeg_quality)
            if not 0 <= jpeg_quality <= 100:
                raise ValueError(
                    f"Expected `jpeg_quality` in [0, 100]. Received: jpeg_quality={jpeg_quality}"
                )
        if not self.grayscale and jpeg_quality is None:
            raise ValueError(
                "ShortcutSqueezing with grayscale=False and jpeg_quality=None does "
                "nothing; keep at least one of them."
            )
        self.jpeg_quality = jpeg_quality
        self.value_range = validate_value_range("value_range", value_range)

    def call(self, inputs, training=None):
        import tensorflow as tf  # TensorFlow's image ops (TF backend)

        low, high = self.value_range
        images = tf.cast(inputs, self.compute_dtype)
        channels = images.shape[-1]
        if channels not in (1, 3):
            raise ValueError(
                "ShortcutSqueezing works on images with 1 or 3 channels. "
                f"Received: input shape {tuple(images.shape)}"
            )
        if self.grayscale and channels == 3:
            gray = tf.image.rgb_to_grayscale(images)
            images = tf.repeat(gray, 3, axis=-1)
        if training and self.jpeg_quality is not None:
            if len(images.shape) != 4:
                raise ValueError(
                    "ShortcutSqueezing compresses batches of images (batch, height, "
                    f"width, channels) in training. Received: input shape "
                    f"{tuple(images.shape)}"
                )
            unit = _checked_range(images, self.value_range, "ShortcutSqueezing")
            unit = tf.cast((unit - low) / (high - low), tf.float32)
            quality = self.jpeg_quality
            compressed = tf.map_fn(
                lambda image: tf.image.adjust_jpeg_quality(image, quality),
                unit,
                fn_output_signature=tf.float32,
            )
            images = tf.cast(low + compressed * (high - low), self.compute_dtype)
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "grayscale": self.grayscale,
            "jpeg_quality": self.jpeg_quality,
            "value_range": list(self.value_range),
        }


@keras.saving.register_keras_serializable(package="keras_poison")
class SharpeningFrequencyFilter(keras.layers.Layer):
    """Random sharpening kernels and DCT low-pass filtering, in training.

    Kim & Sandoval-Segura, "Learning from Convolution-based Unlearnable
    Datasets" (AdvML Frontiers @ NeurIPS 2024), their "RSK + FF": the
    counter to class-wise blurs (`ClassConvolution`, CUDA), whose shortcut
    survives compression (`ShortcutSqueezing`). Every training image is

    1. convolved with a random sharpening kernel (RSK): a 3x3 cross with
       centre `c ~ N(sharpening_centre, kernel_stddev)` and four neighbours
       `-n_i`, `n_i ~ N((c - 1) / 4, kernel_stddev)`, drawn per image and
       shared by its channels (the kernel sums to 1 in expectation, so flat
       regions keep their value); the random kernels change the
       frequency response from image to image, so no class's blur stays a
       fixed signature;
    2. low-pass filtered (FF): the 2-D orthonormal DCT-II of each channel
       keeps its lowest `int(keep_frequencies * H)` rows and
       `int(keep_frequencies * W)` columns of coefficients, the rest are
       zeroed, and the inverse DCT brings it back;

    each step clipped to `value_range`. The authors' CIFAR-10 figures
    (ResNet-18): CUDA data 23.3% test accuracy, with RSK + FF 78.5%, clean
    94.3% (recovery 0.78). Test images pass through unchanged
    (`training=False`), as in their code. One difference: their
    convolution is unpadded (32 to 30 pixels, restored by the random crop
    that follows); here the image is reflect-padded by one pixel, so the
    shape is unchanged and no crop is needed.

    Threat model and known failures: it is meant to break shortcuts that
    are a fixed linear filter per class (blurs) and removes high-frequency
    patterns altogether (the low-pass). A low-frequency additive pattern
    (`SmoothClassPattern`) passes the low-pass. Measured here, the
    authors' figure is not reproduced: on the CIFAR-10 subset (`vgg_like`,
    30 epochs, with `ImageAugmentation`, seed 0) it recovered 0.25 against
    `ClassConvolution` (28.0% against 15.8% undefended, 65.2% clean), and
    cost 10.4 points of clean accuracy, the model trained on low-passed
    images and tested on sharp ones (docs/benchmarks.md §15).

    Args:
        sharpening_centre: float >= 1, the mean centre value of the
            sharpening kernel (`1` with `kernel_stddev=0` is the identity).
            Defaults to `2.5`, the authors'.
        kernel_stddev: float >= 0, the standard deviation of every kernel
            entry; `0` gives the same kernel for every image (their
            "SSK"). Defaults to `0.1`.
        keep_frequencies: float in (0, 1] or `None`, the share of the
            lowest DCT rows and columns kept; `None` turns the filtering
            off. Defaults to `0.3`, the authors'.
        value_range: `(low, high)` of the input images; outputs stay in
            it. Defaults to `(0, 1)`.
        seed: int or `None`, seeds the kernels. Defaults to `None`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> layer = SharpeningFrequencyFilter(seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    >>> bool(np.array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x))
    True
    >>> y = keras.ops.convert_to_numpy(layer(x, training=True))
    >>> y.shape, bool(np.all((y >= 0) & (y <= 1)))
    ((2, 16, 16, 3), True)
    >>> # Low-passed: the image varies far less from pixel to pixel.
    >>> bool(np.abs(np.diff(y, axis=2)).mean() < 0.5 * np.abs(np.diff(x, axis=2)).mean())
    True
    """

    def __init__(
        self,
        sharpening_centre=2.5,
        kernel_stddev=0.1,
        keep_frequencies=0.3,
        value_range=(0, 1),
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sharpening_centre = validate_number(
            "sharpening_centre", sharpening_centre, low=1.0
        )
        self.kernel_stddev = validate_number("kernel_stddev", kernel_stddev, low=0.0)
        if keep_frequencies is not None:
            keep_frequencies = validate_number(
                "keep_frequencies", keep_frequencies, low=0.0, high=1.0, low_open=True
            )
        self.keep_frequencies = keep_frequencies
        self.value_range = validate_value_range("value_range", value_range)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        shape = tuple(inputs.shape)
        if len(shape) != 4 or any(side is not None and side < 2 for side in shape[1:3]):
            raise ValueError(
                "SharpeningFrequencyFilter works on batches of images (batch, "
                "height, width, channels) at least 2x2 pixels. Received: input "
                f"shape {shape}"
            )
        low, high = self.value_range
        images = keras.ops.cast(
            _checked_range(inputs, self.value_range, "SharpeningFrequencyFilter"),
            self.compute_dtype,
        )
        images = keras.ops.clip(self._sharpen(images), low, high)
        if self.keep_frequencies is not None:
            images = keras.ops.clip(self._low_pass(images), low, high)
        return images

    def _sharpen(self, images):
        ops = keras.ops
        # Per-image kernel entries, shaped to broadcast over (H, W, C).
        shape = (ops.shape(images)[0], 1, 1, 1)
        centre = self.sharpening_centre + self.kernel_stddev * keras.random.normal(
            shape, seed=self._seed_generator, dtype=self.compute_dtype
        )
        neighbour_mean = (centre - 1.0) / 4.0
        padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        neighbours = (
            padded[:, :-2, 1:-1, :],  # above
            padded[:, 2:, 1:-1, :],  # below
            padded[:, 1:-1, :-2, :],  # left
            padded[:, 1:-1, 2:, :],  # right
        )
        sharpened = centre * images
        for shifted in neighbours:
            weight = neighbour_mean + self.kernel_stddev * keras.random.normal(
                shape, seed=self._seed_generator, dtype=self.compute_dtype
            )
            sharpened = sharpened - weight * shifted
        return sharpened

    def _low_pass(self, images):
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError(
                "SharpeningFrequencyFilter needs images of a known height and "
                f"width. Received: input shape {tuple(images.shape)}"
            )
        # A small tolerance so that 0.29 * 100 keeps 29, not 28.999... -> 28.
        rows = _dct_low_pass(height, int(height * self.keep_frequencies + 1e-9), "height")
        columns = _dct_low_pass(width, int(width * self.keep_frequencies + 1e-9), "width")
        rows = keras.ops.convert_to_tensor(rows, self.compute_dtype)
        columns = keras.ops.convert_to_tensor(columns, self.compute_dtype)
        return keras.ops.einsum("hi,bijc,wj->bhwc", rows, images, columns)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "sharpening_centre": self.sharpening_centre,
            "kernel_stddev": self.kernel_stddev,
            "keep_frequencies": self.keep_frequencies,
            "value_range": list(self.value_range),
            "seed": self.seed,
        }


def _dct_low_pass(size, kept, axis_name):
    """The (size, size) projection onto the `kept` lowest DCT-II frequencies.

    With D the orthonormal DCT-II matrix, D[:kept].T @ D[:kept] transforms,
    zeroes the higher coefficients and transforms back in one product.
    """
    if kept < 1:
        raise ValueError(
            "SharpeningFrequencyFilter would keep no frequency along the image "
            f"{axis_name} ({size} pixels): `keep_frequencies` must keep at least "
            f"one of them, i.e. be at least {1 / size:.3g} here."
        )
    n = np.arange(size)
    basis = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size))
    basis *= np.sqrt(2.0 / size)
    basis[0] /= np.sqrt(2.0)
    kept_basis = basis[:kept]
    return (kept_basis.T @ kept_basis).astype("float32")
