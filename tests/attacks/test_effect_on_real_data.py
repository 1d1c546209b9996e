"""Each attack has the seed report's effect on real data (scikit-learn's digits).

A small Keras model on 8x8 digits trains in seconds; the same model trained
on the poisoned training set scores lower on the clean test set.
"""

import keras
import numpy as np
import pytest

from keras_poison import ClassPatternNoise
from keras_poison import RandomFlip
from keras_poison import TargetedFlip
from keras_poison import datasets
from keras_poison import metrics


def train_and_score(x_train, y_train, x_test, y_test, epochs=40):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    predictions = np.argmax(model.predict(x_test, verbose=0), axis=1)
    return metrics.accuracy(y_test, predictions), history.history["accuracy"][-1], predictions


@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), (x_test, y_test) = datasets.load("digits")
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    clean_acc, _, clean_pred = train_and_score(x_train, y_train, x_test, y_test)
    return x_train, y_train, x_test, y_test, clean_acc, clean_pred


def test_clean_model_is_accurate(digits):
    assert digits[4] > 0.9


def test_random_flip_lowers_test_accuracy(digits):
    x_train, y_train, x_test, y_test, clean_acc, _ = digits
    _, y_poisoned, mask = RandomFlip(0.4, 10, seed=0).poison(x_train, y_train)
    assert mask.mean() == pytest.approx(0.4, abs=1e-3)
    poisoned_acc, _, _ = train_and_score(x_train, y_poisoned, x_test, y_test)
    assert poisoned_acc < clean_acc - 0.02


def test_targeted_flip_confuses_the_paired_classes(digits):
    x_train, y_train, x_test, y_test, clean_acc, clean_pred = digits
    cm = metrics.confusion_matrix(y_test, clean_pred, num_classes=10)
    attack = TargetedFlip.from_confusion_matrix(cm, rate=0.4, seed=0)
    _, y_poisoned, _ = attack.poison(x_train, y_train)
    poisoned_acc, _, poisoned_pred = train_and_score(x_train, y_poisoned, x_test, y_test)
    assert poisoned_acc < clean_acc - 0.02
    poisoned_cm = metrics.confusion_matrix(y_test, poisoned_pred, num_classes=10)
    pair_errors = lambda m: sum(m[s, t] for s, t in attack.mapping.items())  # noqa: E731
    assert pair_errors(poisoned_cm) > pair_errors(cm)


def test_class_patterns_become_a_shortcut(digits):
    x_train, y_train, x_test, y_test, clean_acc, _ = digits
    attack = ClassPatternNoise(10, epsilon=0.25, seed=0, bias_ratio=0.3)
    x_poisoned, _, _ = attack.poison(x_train, y_train)
    poisoned_acc, train_acc, _ = train_and_score(x_poisoned, y_train, x_test, y_test)
    # The model fits its training set through the patterns, and the clean
    # test set, which has none, suffers (seed 000, §3.2).
    assert train_acc > 0.95
    assert poisoned_acc < clean_acc - 0.05
