"""The seed report's defence recipe as one call."""

import collections

import keras

from keras_poison._validation import validate_int
from keras_poison._validation import validate_value_range
from keras_poison.defences.callbacks import RestoredWeightsCheck
from keras_poison.defences.layers import ImageAugmentation
from keras_poison.defences.losses import LabelSmoothingCrossentropy

SeedDefences = collections.namedtuple(
    "SeedDefences", ["augmentation", "loss", "callbacks"]
)


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
