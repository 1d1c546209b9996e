"""Fixtures of the detector tests: flipped real digits and a tiny model for them."""

import keras
import pytest

from keras_poison import RandomFlip
from keras_poison import datasets


def _tiny_digits_model():
    model = keras.Sequential([
        keras.Input((8, 8)),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model


@pytest.fixture
def tiny_digits_model():
    """A function that builds a fresh compiled MLP for the 8x8 digits."""
    return _tiny_digits_model


@pytest.fixture(scope="module")
def flipped_digits():
    """scikit-learn's digits in [0, 1] with 20% of the labels randomly flipped.

    Returns `(x, true_labels, flipped_labels, mask)`.
    """
    (x, y), _ = datasets.load("digits")
    x = x.astype("float32") / 16.0
    _, noisy, mask = RandomFlip(0.2, num_classes=10, seed=0).poison(x, y)
    return x, y, noisy, mask
