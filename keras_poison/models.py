"""Image classifiers used by the seed papers, as Keras 3 functional models.

* `vgg_like`: the VGG-like CIFAR-10 CNN of seed `000` (section 2).
* `lenet5`: LeNet-5, the MNIST model of the class-oriented poisoning paper
  (seed `003`).
* `vgg9`: a 9-weight-layer VGG, the CIFAR-10 model of seed `003`.
* `resnet50`: `keras.applications.ResNet50` (untrained), the ImageNet model
  of seed `003` (its Table 1), with the same `"logits"` / `"probabilities"`
  ending and top-5 accuracy among its metrics.

Every builder ends in a `Dense` layer named `"logits"` (no activation)
followed by an `Activation("softmax")` layer named `"probabilities"`, so the
model outputs probabilities while crafting code can reach the pre-softmax
logits with `model.get_layer("logits").output`, e.g.
`keras.Model(model.inputs, model.get_layer("logits").output)`.

All builders share the arguments `input_shape`, `num_classes`,
`learning_rate`, `label_format`, `compile` and `seed`. With `compile=True`
the model is compiled with Adam, the cross-entropy matching `label_format`
and the `"accuracy"` metric (`resnet50` adds top-5 accuracy).
"""

import math
import random

import keras

_LABEL_FORMATS = ("sparse", "one_hot")


def vgg_like(
    input_shape=(32, 32, 3),
    num_classes=10,
    learning_rate=1e-3,
    dropout=(0.2, 0.3, 0.4, 0.5),
    label_format="sparse",
    compile=True,
    seed=None,
):
    """Builds the VGG-like CNN of seed `000` (the CIFAR-10 baseline).

    Three convolutional blocks with 32, 64 and 128 filters. Each block is
    two 3x3 same-padded ReLU convolutions (He-uniform initialisation), each
    followed by batch normalisation, then 2x2 max pooling and dropout. The
    features are flattened and passed to `Dense(128, "relu")`, batch
    normalisation and dropout, then to the `"logits"` and `"probabilities"`
    output layers. That is 6 convolutions + 2 dense = 8 weight layers.

    Seed `000` says that the first two blocks are made of two convolutions
    each and leaves the third block open; it cites Brownlee's "How to
    Develop a CNN from Scratch for CIFAR-10 Photo Classification", whose
    final model uses three identical two-convolution blocks with batch
    normalisation and dropout increasing 0.2 / 0.3 / 0.4, and dropout 0.5
    after the dense layer. This builder follows Brownlee's model (and
    batch-normalises the dense layer as he does), with the seed's Adam
    optimiser in place of Brownlee's SGD.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`. A
            `(height, width)` shape gets a channel axis, and a flat
            `(n,)` shape with `n` a perfect square is reshaped to
            `(sqrt(n), sqrt(n), 1)`, both by a `Reshape` layer at the input.
            Height and width must be at least 8 (three 2x2 poolings).
            Defaults to `(32, 32, 3)`.
        num_classes: Number of classes, at least 2. Defaults to `10`.
        learning_rate: Adam learning rate, used when `compile=True`.
            Defaults to `1e-3`.
        dropout: Four dropout rates in `[0, 1)`: after the three blocks and
            after the dense layer. Defaults to `(0.2, 0.3, 0.4, 0.5)`.
        label_format: `"sparse"` (integer labels, sparse categorical
            cross-entropy) or `"one_hot"` (one-hot labels, categorical
            cross-entropy). Defaults to `"sparse"`.
        compile: Whether to compile the model. Defaults to `True`.
        seed: Integer seed for weight initialisers and dropout masks, so
            that two models built with the same seed start identical and
            drop the same units. `None` draws fresh randomness. Defaults to
            `None`.

    Returns:
        A `keras.Model` named `"vgg_like"` mapping images to class
        probabilities of shape `(batch, num_classes)`.

    Example:

    >>> model = vgg_like(input_shape=(32, 32, 3), num_classes=10, seed=0)
    >>> model.output_shape
    (None, 10)
    >>> logits = keras.Model(model.inputs, model.get_layer("logits").output)
    """
    if not isinstance(dropout, (list, tuple)) or len(dropout) != 4:
        raise ValueError(
            "Expected `dropout` to be a sequence of 4 rates (three blocks and "
            f"the dense layer). Received: dropout={dropout!r}"
        )
    for rate in dropout:
        _check_rate(rate, "dropout", dropout)
    _check_common(num_classes, learning_rate, label_format)
    seeds = _SeedSequence(seed)
    inputs, x = _image_input(input_shape, min_size=8)

    for block, (filters, rate) in enumerate(zip((32, 64, 128), dropout), 1):
        for conv in (1, 2):
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer=keras.initializers.HeUniform(seeds.next()),
                name=f"block{block}_conv{conv}",
            )(x)
            x = keras.layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        x = keras.layers.Dropout(
            rate, seed=seeds.next(), name=f"block{block}_dropout"
        )(x)

    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        128,
        activation="relu",
        kernel_initializer=keras.initializers.HeUniform(seeds.next()),
        name="dense",
    )(x)
    x = keras.layers.BatchNormalization(name="dense_bn")(x)
    x = keras.layers.Dropout(dropout[3], seed=seeds.next(), name="dense_dropout")(
        x
    )
    return _finish(
        inputs, x, "vgg_like", num_classes, learning_rate, label_format,
        compile, seeds,
    )


def lenet5(
    input_shape=(28, 28, 1),
    num_classes=10,
    learning_rate=1e-3,
    label_format="sparse",
    compile=True,
    seed=None,
):
    """Builds LeNet-5, the MNIST model of the class-oriented poisoning paper.

    The usual modern form of LeCun et al. (1998) for 28x28 inputs:
    `Conv2D(6, 5x5, same)` -> 2x2 max pooling -> `Conv2D(16, 5x5, valid)`
    -> 2x2 max pooling -> flatten -> `Dense(120)` -> `Dense(84)` ->
    `"logits"` -> `"probabilities"`. That is 2 convolutions + 3 dense = 5
    weight layers; on 28x28 inputs the flattened features are 5x5x16 = 400,
    as in the original network's 32x32 input with valid convolutions.

    Hidden layers use ReLU and subsampling uses max pooling (not the
    original's scaled tanh and trainable average pooling, nor its partial
    C3 connections and RBF output): the common choice in TensorFlow
    reproductions, and it trains quickly with Adam. Seed `003` names
    LeNet-5 without giving its layers.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`. A
            `(height, width)` shape gets a channel axis, and a flat
            `(n,)` shape with `n` a perfect square (e.g. `(784,)`) is
            reshaped to `(sqrt(n), sqrt(n), 1)`, both by a `Reshape` layer
            at the input. Height and width must be at least 12. Defaults to
            `(28, 28, 1)`.
        num_classes: Number of classes, at least 2. Defaults to `10`.
        learning_rate: Adam learning rate, used when `compile=True`.
            Defaults to `1e-3`.
        label_format: `"sparse"` (integer labels, sparse categorical
            cross-entropy) or `"one_hot"` (one-hot labels, categorical
            cross-entropy). Defaults to `"sparse"`.
        compile: Whether to compile the model. Defaults to `True`.
        seed: Integer seed for the weight initialisers, so that two models
            built with the same seed start identical. `None` draws fresh
            randomness. Defaults to `None`.

    Returns:
        A `keras.Model` named `"lenet5"` mapping images to class
        probabilities of shape `(batch, num_classes)`.

    Example:

    >>> model = lenet5(input_shape=(784,), num_classes=10, seed=0)
    >>> model.output_shape
    (None, 10)
    """
    _check_common(num_classes, learning_rate, label_format)
    seeds = _SeedSequence(seed)
    inputs, x = _image_input(input_shape, min_size=12)

    x = keras.layers.Conv2D(
        6,
        5,
        padding="same",
        activation="relu",
        kernel_initializer=keras.initializers.GlorotUniform(seeds.next()),
        name="conv1",
    )(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(
        16,
        5,
        padding="valid",
        activation="relu",
        kernel_initializer=keras.initializers.GlorotUniform(seeds.next()),
        name="conv2",
    )(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for units, name in ((120, "dense1"), (84, "dense2")):
        x = keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seeds.next()),
            name=name,
        )(x)
    return _finish(
        inputs, x, "lenet5", num_classes, learning_rate, label_format,
        compile, seeds,
    )


def vgg9(
    input_shape=(32, 32, 3),
    num_classes=10,
    learning_rate=1e-3,
    dropout=0.5,
    label_format="sparse",
    compile=True,
    seed=None,
):
    """Builds a 9-weight-layer VGG, the CIFAR-10 model of seed `003`.

    Seed `003` uses "Vgg-9" (citing Simonyan and Zisserman) without giving
    its layers. This builder uses VGG's pattern with 6 convolutions and 3
    dense layers:

    `Conv2D(64) x2 -> pool -> Conv2D(128) x2 -> pool -> Conv2D(256) x2 ->
    pool -> flatten -> Dense(256) -> dropout -> Dense(256) -> dropout ->
    "logits" -> "probabilities"`

    Convolutions are 3x3, same-padded, ReLU with He-uniform initialisation;
    pooling is 2x2 max pooling; as in the original VGG there is no batch
    normalisation and dropout follows the two hidden dense layers.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`. A
            `(height, width)` shape gets a channel axis, and a flat
            `(n,)` shape with `n` a perfect square is reshaped to
            `(sqrt(n), sqrt(n), 1)`, both by a `Reshape` layer at the input.
            Height and width must be at least 8 (three 2x2 poolings).
            Defaults to `(32, 32, 3)`.
        num_classes: Number of classes, at least 2. Defaults to `10`.
        learning_rate: Adam learning rate, used when `compile=True`.
            Defaults to `1e-3`.
        dropout: Dropout rate in `[0, 1)` after each hidden dense layer.
            Defaults to `0.5`.
        label_format: `"sparse"` (integer labels, sparse categorical
            cross-entropy) or `"one_hot"` (one-hot labels, categorical
            cross-entropy). Defaults to `"sparse"`.
        compile: Whether to compile the model. Defaults to `True`.
        seed: Integer seed for weight initialisers and dropout masks, so
            that two models built with the same seed start identical and
            drop the same units. `None` draws fresh randomness. Defaults to
            `None`.

    Returns:
        A `keras.Model` named `"vgg9"` mapping images to class
        probabilities of shape `(batch, num_classes)`.

    Example:

    >>> model = vgg9(input_shape=(32, 32, 3), num_classes=10, seed=0)
    >>> model.output_shape
    (None, 10)
    """
    _check_rate(dropout, "dropout", dropout)
    _check_common(num_classes, learning_rate, label_format)
    seeds = _SeedSequence(seed)
    inputs, x = _image_input(input_shape, min_size=8)

    for block, filters in enumerate((64, 128, 256), 1):
        for conv in (1, 2):
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer=keras.initializers.HeUniform(seeds.next()),
                name=f"block{block}_conv{conv}",
            )(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)

    x = keras.layers.Flatten(name="flatten")(x)
    for index in (1, 2):
        x = keras.layers.Dense(
            256,
            activation="relu",
            kernel_initializer=keras.initializers.HeUniform(seeds.next()),
            name=f"dense{index}",
        )(x)
        x = keras.layers.Dropout(
            dropout, seed=seeds.next(), name=f"dense{index}_dropout"
        )(x)
    return _finish(
        inputs, x, "vgg9", num_classes, learning_rate, label_format,
        compile, seeds,
    )


def resnet50(
    input_shape=(224, 224, 3),
    num_classes=1000,
    learning_rate=1e-3,
    label_format="sparse",
    compile=True,
    seed=None,
):
    """Builds ResNet-50, the ImageNet model of the class-oriented paper.

    Seed `003` attacks "ResNet-50 [17]" (He et al., 2016) on ImageNet and
    reports top-1 and top-5 accuracy (its Table 1). This builder is
    `keras.applications.ResNet50(weights=None, include_top=False,
    pooling="avg")`, untrained (nothing is downloaded), followed by the
    `"logits"` and `"probabilities"` layers of every model here: the same
    network as Keras' `ResNet50(weights=None, classes=num_classes)`, whose
    top is global average pooling and one dense layer, with the softmax
    split from the dense layer so that crafting reads the logits.

    The images go into the first convolution as they are: no
    `keras.applications.resnet50.preprocess_input` (which expects `[0, 255]`
    RGB and the ImageNet channel means of trained weights). The harness feeds
    `[0, 1]` images, as to the other models; batch normalisation after the
    first convolution absorbs the scale.

    With `compile=True` the metrics are `"accuracy"` and, when
    `num_classes > 5`, top-5 accuracy named `"top5_accuracy"`
    (`keras.metrics.SparseTopKCategoricalAccuracy(k=5)`, or
    `TopKCategoricalAccuracy` for one-hot labels).

    Args:
        input_shape: Shape of one image, `(height, width, channels)`; height
            and width at least 32 (`keras.applications`' minimum). ImageNet
            models use `(224, 224, 3)`; small inputs such as `(32, 32, 3)`
            build the same 50 layers for tests. Defaults to
            `(224, 224, 3)`.
        num_classes: Number of classes, at least 2. Defaults to `1000`
            (ImageNet-1k).
        learning_rate: Adam learning rate, used when `compile=True`.
            Defaults to `1e-3`.
        label_format: `"sparse"` (integer labels, sparse categorical
            cross-entropy) or `"one_hot"` (one-hot labels, categorical
            cross-entropy). Defaults to `"sparse"`.
        compile: Whether to compile the model. Defaults to `True`.
        seed: Integer seed for the weight initialisers, so that two models
            built with the same seed start identical. `keras.applications`
            takes no seed, so the builder seeds Python's `random` (where
            Keras draws an unseeded initialiser's seed) while it builds, and
            restores its state afterwards. `None` draws fresh randomness.
            Defaults to `None`.

    Returns:
        A `keras.Model` named `"resnet50"` mapping images to class
        probabilities of shape `(batch, num_classes)`, its layers those of
        `keras.applications.ResNet50` (not nested), then `"logits"` and
        `"probabilities"`.

    Example:

    >>> model = resnet50(input_shape=(32, 32, 3), num_classes=10, seed=0)
    >>> model.output_shape
    (None, 10)
    >>> model.get_layer("logits").input.shape
    (None, 2048)
    """
    _check_common(num_classes, learning_rate, label_format)
    seeds = _SeedSequence(seed)
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
        raise ValueError(
            "Expected `input_shape` of 3 dimensions, (height, width, "
            f"channels), e.g. (224, 224, 3). Received: input_shape={input_shape!r}"
        )
    inputs, x = _image_input(input_shape, min_size=32)
    state = random.getstate()
    try:
        if seed is not None:
            random.seed(seed)
        backbone = keras.applications.ResNet50(
            weights=None,
            include_top=False,
            input_tensor=x,
            pooling="avg",
        )
        features = backbone.output
        model = _finish(
            inputs, features, "resnet50", num_classes, learning_rate,
            label_format, compile, seeds, top5=num_classes > 5,
        )
    finally:
        random.setstate(state)
    return model


class _SeedSequence:
    """Hands out a distinct integer seed per layer (or `None` throughout).

    One seeded initialiser shared by several layers would give them the
    same weights, so each layer gets `seed + i`.
    """

    def __init__(self, seed):
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or seed < 0
        ):
            raise ValueError(
                "Expected `seed` to be a non-negative integer or None. "
                f"Received: seed={seed!r}"
            )
        self._seed = seed
        self._count = 0

    def next(self):
        if self._seed is None:
            return None
        self._count += 1
        return self._seed + self._count - 1


def _check_common(num_classes, learning_rate, label_format):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(
            "Expected `num_classes` to be an integer. "
            f"Received: num_classes={num_classes!r}"
        )
    if num_classes < 2:
        raise ValueError(
            f"Expected `num_classes` >= 2. Received: num_classes={num_classes}"
        )
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not learning_rate > 0
    ):
        raise ValueError(
            "Expected `learning_rate` > 0. "
            f"Received: learning_rate={learning_rate!r}"
        )
    if label_format not in _LABEL_FORMATS:
        raise ValueError(
            f"Expected `label_format` in {_LABEL_FORMATS}. "
            f"Received: label_format={label_format!r}"
        )


def _check_rate(rate, name, received):
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float))
        or not 0 <= rate < 1
    ):
        raise ValueError(
            f"Expected `{name}` rates in [0, 1). Received: {name}={received!r}"
        )


def _image_input(input_shape, min_size):
    """Returns `(inputs, images)`, reshaping flat or 2-D inputs to HWC."""
    if not isinstance(input_shape, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0
        for d in input_shape
    ):
        raise ValueError(
            "Expected `input_shape` to be a tuple of positive integers, "
            "e.g. (32, 32, 3). "
            f"Received: input_shape={input_shape!r}"
        )
    input_shape = tuple(input_shape)
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        if side * side != input_shape[0]:
            raise ValueError(
                "Expected a flat `input_shape` of a square single-channel "
                "image, e.g. (784,), or an image shape (height, width, "
                f"channels). Received: input_shape={input_shape}"
            )
        image_shape = (side, side, 1)
    elif len(input_shape) == 2:
        image_shape = input_shape + (1,)
    elif len(input_shape) == 3:
        image_shape = input_shape
    else:
        raise ValueError(
            "Expected `input_shape` of 1, 2 or 3 dimensions, e.g. "
            f"(32, 32, 3). Received: input_shape={input_shape}"
        )
    if min(image_shape[:2]) < min_size:
        raise ValueError(
            f"Expected image height and width >= {min_size}. "
            f"Received: input_shape={input_shape}"
        )
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    if image_shape != input_shape:
        x = keras.layers.Reshape(image_shape, name="reshape")(x)
    return inputs, x


def _finish(
    inputs, x, name, num_classes, learning_rate, label_format, compile, seeds,
    top5=False,
):
    """Adds the logits and softmax layers and optionally compiles."""
    logits = keras.layers.Dense(
        num_classes,
        activation=None,
        kernel_initializer=keras.initializers.GlorotUniform(seeds.next()),
        name="logits",
    )(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name=name)
    if compile:
        loss = (
            keras.losses.SparseCategoricalCrossentropy()
            if label_format == "sparse"
            else keras.losses.CategoricalCrossentropy()
        )
        metrics = ["accuracy"]
        if top5:
            metrics.append(top5_metric(label_format))
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss=loss,
            metrics=metrics,
        )
    return model


def top5_metric(label_format="sparse"):
    """Keras' top-5 accuracy for the given label format, named `"top5_accuracy"`.

    Args:
        label_format: `"sparse"` (`SparseTopKCategoricalAccuracy`) or
            `"one_hot"` (`TopKCategoricalAccuracy`). Defaults to `"sparse"`.

    Returns:
        A `keras.metrics.Metric` with `k=5`.

    Example:

    >>> metric = top5_metric()
    >>> metric.update_state([2], [[0.3, 0.2, 0.1, 0.15, 0.05, 0.12, 0.08]])
    >>> float(metric.result())
    1.0
    """
    if label_format not in _LABEL_FORMATS:
        raise ValueError(
            f"Expected `label_format` in {_LABEL_FORMATS}. "
            f"Received: label_format={label_format!r}"
        )
    if label_format == "sparse":
        return keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy")
    return keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy")
