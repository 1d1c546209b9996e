"""Defence recipes, one call each: the seed report's three, what beat them, and
the class-oriented paper's weight averaging."""

import collections

import keras

from keras_poison._validation import validate_int
from keras_poison._validation import validate_number
from keras_poison._validation import validate_value_range
from keras_poison.defences.callbacks import RestoredWeightsCheck
from keras_poison.defences.layers import ColourCentering
from keras_poison.defences.layers import ImageAugmentation
from keras_poison.defences.losses import GeneralizedCrossentropy
from keras_poison.defences.losses import LabelSmoothingCrossentropy
from keras_poison.defences.pattern_removal import ClassPatternRemoval
from keras_poison.defences.pattern_removal import ClassPatternSwap

SeedDefences = collections.namedtuple(
    "SeedDefences", ["augmentation", "loss", "callbacks"]
)
ClassPatternDefences = collections.namedtuple("ClassPatternDefences", ["removal", "layers"])
ClassPatternSwapDefences = collections.namedtuple(
    "ClassPatternSwapDefences", ["swap", "layers"]
)
LabelFlipDefences = collections.namedtuple("LabelFlipDefences", ["augmentation", "loss"])
AveragedWeights = collections.namedtuple("AveragedWeights", ["optimizer", "callbacks"])


def seed_defences(
    value_range=(0, 1),
    label_smoothing=0.1,
    patience=5,
    monitor="val_loss",
    start_from_epoch=0,
    from_logits=False,
    horizontal_flip=True,
    seed=None,
):
    """Seed report 000's three defences (§4.1–4.3), ready to plug in.

    Returns the augmentation layer to put in front of the model, the
    label-smoothed loss (sparse or one-hot labels) to compile with, and the
    callbacks to pass to `fit`: Keras' own `EarlyStopping(monitor,
    patience, restore_best_weights=True)` followed by a
    `RestoredWeightsCheck` that warns if the restored weights are near
    chance. The defaults are the seed's (`val_loss`, patience 5, smoothing
    0.1). On batch-norm models the validation loss can rise for the first
    epochs while accuracy climbs, so the seed's setting may restore epoch-1
    weights; `start_from_epoch` or `monitor="val_accuracy"` avoids that.

    Known adaptive failure: a class pattern the augmentation cannot move
    (`SmoothClassPattern`, smooth and mirror-symmetric) is learnt at once,
    so the validation loss is best at epoch 1 and early stopping restores
    a model that learnt little else: 14.4% test accuracy on the CIFAR-10
    subset against 32.1% undefended and 55.5% under the same defences for
    the seed's own pattern (seed 0, docs/benchmarks.md §15).

    Args:
        value_range: `(low, high)` of the input images. Defaults to `(0, 1)`.
        label_smoothing: float in [0, 1). Defaults to `0.1`.
        patience: int >= 0, epochs without improvement before stopping.
            Defaults to `5`.
        monitor: str, the logged quantity early stopping watches.
            Defaults to `"val_loss"`.
        start_from_epoch: int >= 0, epochs before early stopping starts
            watching. Defaults to `0`.
        from_logits: bool, whether the model outputs logits. Defaults to
            `False`.
        seed: int or `None`, seeds the augmentation. Defaults to `None`.

    Returns:
        A `SeedDefences(augmentation, loss, callbacks)` named tuple.

    Example:

    >>> defences = seed_defences()
    >>> model = keras.Sequential(
    ...     [keras.Input((8, 8, 3)), defences.augmentation,
    ...      keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile("adam", loss=defences.loss, metrics=["accuracy"])
    >>> x = np.random.default_rng(0).uniform(size=(12, 8, 8, 3)).astype("float32")
    >>> y = np.arange(12) % 3
    >>> history = model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0,
    ...                     callbacks=defences.callbacks)
    >>> type(defences.callbacks[0]).__name__
    'EarlyStopping'
    """
    value_range = validate_value_range("value_range", value_range)
    patience = validate_int("patience", patience, 0)
    start_from_epoch = validate_int("start_from_epoch", start_from_epoch, 0)
    augmentation = ImageAugmentation(
        horizontal_flip=bool(horizontal_flip), value_range=value_range, seed=seed
    )
    loss = LabelSmoothingCrossentropy(
        label_smoothing=label_smoothing, from_logits=from_logits
    )
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=monitor,
        patience=patience,
        restore_best_weights=True,
        start_from_epoch=start_from_epoch,
    )
    return SeedDefences(
        augmentation, loss, [early_stopping, RestoredWeightsCheck(early_stopping)]
    )


def class_pattern_defences(num_classes, value_range=(0, 1), horizontal_flip=True, seed=None):
    """The defence against class-wise clean-label patterns that met issue 4's goal.

    Three parts, each removing what the others leave (docs/benchmarks.md §5):

    * `removal`, a `ClassPatternRemoval`: fit it on the training set and
      apply it to the training data (`removal.remove(x, y)`, or
      `dataset.apply(removal)`); it subtracts the fine-grained part of each
      class's shared pattern;
    * `layers[0]`, the seed's `ImageAugmentation` (brightness, contrast,
      horizontal flip): a flipped image no longer carries the pattern's
      pixels where they were, so what removal leaves is half as consistent;
    * `layers[1]`, `ColourCentering`: removes each image's mean colour, so a
      class's constant colour bias, which removal cannot tell from the
      class's natural colour, is gone in training and at inference.

    Put `layers` in front of the model, in order. On the CIFAR-10 subset
    with `vgg_like()` against `ClassPatternNoise(epsilon=16/255)` it
    recovered all of the attack's cost on three seeds (recovery 1.12,
    docs/benchmarks.md §5).

    Known adaptive failure: a pattern written against it passes. At the
    same budget, `SmoothClassPattern` (smooth, zero-mean per channel,
    mirror-symmetric: nothing the high-pass removal, the centering or the
    flip can see) left the defended model at 35.1% test accuracy against
    65.2% clean and 32.1% undefended (recovery 0.09 on seed 0; −0.01 and
    0.10 on seeds 1 and 2; docs/benchmarks.md §15). `ShortcutSqueezing`
    recovers 0.70–0.83 of it (3 seeds), at a
    clean cost of 5.7–9.0 points. Nor does it hold against class-wise blurs
    (`ClassConvolution`, recovery 0.26) or linearly separable noise
    (`SeparableNoise`, 0.09); it mostly holds against the one-pixel shortcut
    (`OnePixelShortcut`, recovery 0.78–0.94 over three seeds).

    Args:
        num_classes: int >= 2, the number of classes.
        value_range: `(low, high)` of the input images. Defaults to `(0, 1)`.
        horizontal_flip: bool, whether the augmentation flips images.
            Defaults to `True`.
        seed: int or `None`, seeds the augmentation. Defaults to `None`.

    Returns:
        A `ClassPatternDefences(removal, layers)` named tuple; `removal`
        is not fitted yet.

    Example:

    >>> x = np.random.default_rng(0).uniform(size=(40, 8, 8, 3)).astype("float32")
    >>> y = np.arange(40) % 2
    >>> defences = class_pattern_defences(num_classes=2, seed=0)
    >>> x_clean, _ = defences.removal.fit(x, y).remove(x, y)
    >>> model = keras.Sequential(
    ...     [keras.Input((8, 8, 3)), *defences.layers,
    ...      keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> _ = model.fit(x_clean, y, epochs=1, verbose=0)
    >>> [type(layer).__name__ for layer in defences.layers]
    ['ImageAugmentation', 'ColourCentering']
    """
    value_range = validate_value_range("value_range", value_range)
    removal = ClassPatternRemoval(num_classes=num_classes, value_range=value_range)
    augmentation = ImageAugmentation(
        horizontal_flip=bool(horizontal_flip), value_range=value_range, seed=seed
    )
    # Centering last, so training and test images reach the model centred alike.
    return ClassPatternDefences(removal, [augmentation, ColourCentering()])


def class_pattern_swap_defences(
    num_classes, value_range=(0, 1), horizontal_flip=True, seed=None
):
    """The defence against class-wise additive patterns that also holds against smooth ones.

    `class_pattern_defences()` with its removal replaced by a swap
    (docs/benchmarks.md §15):

    * `swap`, a `ClassPatternSwap`: fit it on the training set and apply it
      to the training stream (`dataset.apply(swap)`, after any shuffle or
      cache and before batching or after); every image gets a random
      class's mean in place of its own, anew each epoch, so no
      class-constant additive pattern, smooth or fine-grained, predicts
      the label;
    * `layers[0]`, the seed's `ImageAugmentation`, and `layers[1]`,
      `ColourCentering`, as in `class_pattern_defences()`.

    Put `layers` in front of the model, in order; test images go through
    the model unchanged.

    On the CIFAR-10 subset with `vgg_like()` (30 epochs, seed 0;
    docs/benchmarks.md §15) it undid `SmoothClassPattern(epsilon=16/255)`,
    the pattern that passes `class_pattern_defences()` (recovery 0.06 there):
    64.7% test accuracy against 32.1% undefended and 65.2% clean (recovery
    0.98; 0.96 on seed 1), at 1.1 points of clean accuracy (64.2%).

    Known adaptive failure: see `ClassPatternSwap`; only what the class
    mean holds is moved.

    Args:
        num_classes: int >= 2, the number of classes.
        value_range: `(low, high)` of the input images. Defaults to `(0, 1)`.
        horizontal_flip: bool, whether the augmentation flips images.
            Defaults to `True`.
        seed: int or `None`, seeds the swap's draws and the augmentation.
            Defaults to `None`.

    Returns:
        A `ClassPatternSwapDefences(swap, layers)` named tuple; `swap` is
        not fitted yet.

    Example:

    >>> x = np.random.default_rng(0).uniform(size=(40, 8, 8, 3)).astype("float32")
    >>> y = np.arange(40) % 2
    >>> defences = class_pattern_swap_defences(num_classes=2, seed=0)
    >>> train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(40)
    >>> train = train.apply(defences.swap.fit(x, y)).batch(8)
    >>> model = keras.Sequential(
    ...     [keras.Input((8, 8, 3)), *defences.layers,
    ...      keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> _ = model.fit(train, epochs=1, verbose=0)
    >>> [type(layer).__name__ for layer in defences.layers]
    ['ImageAugmentation', 'ColourCentering']
    """
    value_range = validate_value_range("value_range", value_range)
    swap = ClassPatternSwap(num_classes=num_classes, value_range=value_range, seed=seed)
    augmentation = ImageAugmentation(
        horizontal_flip=bool(horizontal_flip), value_range=value_range, seed=seed
    )
    return ClassPatternSwapDefences(swap, [augmentation, ColourCentering()])


def label_flip_defences(q=0.7, value_range=(0, 1), horizontal_flip=True, from_logits=False, seed=None):
    """Augmentation with a noise-robust loss: the pair that held off flipped labels best.

    Generalized cross-entropy (Zhang & Sabuncu 2018, eq. 6, `(1 - p_y^q) /
    q`) gives a wrong label's gradient less weight than cross-entropy does,
    and the seed's `ImageAugmentation` (brightness, contrast, horizontal
    flip) keeps the network from fitting individual images, so the flipped
    ones stay unlearnt for longer. Each alone did little on the CIFAR-10
    subset; together they recovered 0.59 of what 20% targeted flips took
    over three seeds (30 epochs), and 0.94 of what 20% random flips took
    when trained for 60 epochs (0.39 at 30 epochs, before an undefended
    model starts memorising the flipped labels; docs/benchmarks.md §5).
    Train for long enough: the pair pays off once plain cross-entropy would
    fit the wrong labels.

    Known adaptive failure: flips where the data half-supports the new label
    (`EvasiveFlip`) are what a noise-robust loss forgives: on MNIST 5k at
    20% flips `GeneralizedCrossentropy(q=0.7)` recovered none of the 6–7
    points they took (−0.13, 3 seeds; docs/benchmarks.md §16).

    Args:
        q: float in (0, 1], the exponent of generalized cross-entropy.
            Defaults to `0.7` (the paper's CIFAR-10 value).
        value_range: `(low, high)` of the input images. Defaults to `(0, 1)`.
        horizontal_flip: bool, whether the augmentation flips images.
            Defaults to `True`.
        from_logits: bool, whether the model outputs logits. Defaults to
            `False`.
        seed: int or `None`, seeds the augmentation. Defaults to `None`.

    Returns:
        A `LabelFlipDefences(augmentation, loss)` named tuple.

    Example:

    >>> defences = label_flip_defences(seed=0)
    >>> model = keras.Sequential(
    ...     [keras.Input((8, 8, 3)), defences.augmentation,
    ...      keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile("adam", loss=defences.loss, metrics=["accuracy"])
    >>> x = np.random.default_rng(0).uniform(size=(12, 8, 8, 3)).astype("float32")
    >>> _ = model.fit(x, np.arange(12) % 3, epochs=1, verbose=0)
    >>> type(defences.loss).__name__, defences.loss.get_config()["q"]
    ('GeneralizedCrossentropy', 0.7)
    """
    value_range = validate_value_range("value_range", value_range)
    loss = GeneralizedCrossentropy(q=q, from_logits=from_logits)
    augmentation = ImageAugmentation(
        horizontal_flip=bool(horizontal_flip), value_range=value_range, seed=seed
    )
    return LabelFlipDefences(augmentation, loss)


def averaged_weights(
    optimizer="sgd", ema_momentum=0.99, ema_overwrite_frequency=None, swap_on_epoch=False
):
    """Weight averaging, the class-oriented paper's first suggested defence (§6).

    The paper suggests an "averaged stochastic gradient classifier": a model
    whose weights are an average of the weights along training, so that the
    last few (possibly poisoned) batches pull it less. Keras does this
    already; this call only puts the pieces together:

    * `optimizer`: a copy of the given optimizer with `use_ema=True`, which
      keeps an exponential moving average of the weights (`average =
      ema_momentum * average + (1 - ema_momentum) * weights` after every
      step; Keras' form of Polyak averaging, not the uniform average of all
      iterates). Keras' `fit` writes the average into the model after the
      last epoch.
    * `callbacks`: `[keras.callbacks.SwapEMAWeights(swap_on_epoch)]`, so
      that validation during `fit` (and with `swap_on_epoch=True`, the
      callbacks after it, such as `EarlyStopping` or `ModelCheckpoint`) sees
      the averaged weights too.

    Known adaptive failure: averaging smooths the last steps, not what
    every step learns. Against flips placed where a model is least sure or
    where the neighbours agree with the new label (`EvasiveFlip`, 20% of
    MNIST 5k) the averaged model lost 6.1–6.3 points, against 1.1 for
    random flips (docs/benchmarks.md §10, §18).

    Args:
        optimizer: an optimizer name (`"sgd"`, `"adam"`, ...), config dict
            or instance, as `keras.optimizers.get` takes; an instance is
            copied through its config, not changed. Defaults to `"sgd"`.
        ema_momentum: float in [0, 1), the weight of the old average at each
            step; `1 / (1 - ema_momentum)` is roughly the number of recent
            steps averaged. Defaults to `0.99` (Keras' default).
        ema_overwrite_frequency: int >= 1 or `None`: every that many steps
            the model's weights are replaced by the average (Keras' option).
            `None` only at the end of `fit`. Defaults to `None`.
        swap_on_epoch: bool, `SwapEMAWeights(swap_on_epoch=...)`: also swap
            the averaged weights in for the callbacks at the end of each
            epoch. Defaults to `False`.

    Returns:
        An `AveragedWeights(optimizer, callbacks)` named tuple.

    Example:

    >>> averaged = averaged_weights(keras.optimizers.SGD(0.05), ema_momentum=0.9)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> model.compile(averaged.optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    >>> y = np.arange(32) % 3
    >>> _ = model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0,
    ...               callbacks=averaged.callbacks)
    >>> averaged.optimizer.use_ema, type(averaged.callbacks[0]).__name__
    (True, 'SwapEMAWeights')
    """
    ema_momentum = validate_number(
        "ema_momentum", ema_momentum, low=0.0, high=1.0, high_open=True
    )
    if ema_overwrite_frequency is not None:
        ema_overwrite_frequency = validate_int(
            "ema_overwrite_frequency", ema_overwrite_frequency, 1
        )
    if not isinstance(swap_on_epoch, bool):
        raise TypeError(
            "Expected `swap_on_epoch` to be a bool. "
            f"Received: swap_on_epoch={swap_on_epoch!r}"
        )
    if isinstance(optimizer, keras.optimizers.Optimizer):
        base = optimizer
    elif isinstance(optimizer, (str, dict)):
        try:
            base = keras.optimizers.get(optimizer)
        except ValueError as error:
            raise ValueError(
                "Expected `optimizer` to be a Keras optimizer name, config or "
                f"instance. Received: optimizer={optimizer!r} ({error})"
            ) from None
    else:
        raise TypeError(
            "Expected `optimizer` to be a Keras optimizer name, config or instance. "
            f"Received: optimizer={optimizer!r} of type {type(optimizer).__name__}"
        )
    config = base.get_config()
    config.update(
        use_ema=True,
        ema_momentum=ema_momentum,
        ema_overwrite_frequency=ema_overwrite_frequency,
    )
    averaged = type(base).from_config(config)
    return AveragedWeights(
        averaged, [keras.callbacks.SwapEMAWeights(swap_on_epoch=swap_on_epoch)]
    )
