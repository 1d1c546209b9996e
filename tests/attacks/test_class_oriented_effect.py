"""The class-oriented attacks have their effect on real data (scikit-learn's digits).

The paper's protocol (§5) at toy scale: a small model trained on clean
digits is fine-tuned on 300 training images of which a fraction has been
replaced by crafted poisons; the clean test set shows the effect.
"""

import keras
import numpy as np
import pytest

from keras_poison import SupplanterPoison
from keras_poison import VictimPoison
from keras_poison import datasets
from keras_poison import metrics


def build_model():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(inputs, keras.layers.Activation("softmax")(logits))


@pytest.fixture(scope="module")
def trained():
    (x_train, y_train), (x_test, y_test) = datasets.load("digits")
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    keras.utils.set_random_seed(0)
    base = build_model()
    base.compile("adam", "sparse_categorical_crossentropy")
    base.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    before = base.predict(x_test, verbose=0).argmax(-1)
    subset = np.sort(np.random.default_rng(0).choice(len(x_train), 300, replace=False))
    return base, x_train[subset], y_train[subset], x_test, y_test, before


def fine_tune(base, x, y, x_test):
    keras.utils.set_random_seed(1)
    model = build_model()
    model.set_weights(base.get_weights())
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    return model.predict(x_test, verbose=0).argmax(-1)


def test_base_model_is_accurate(trained):
    _, _, _, _, y_test, before = trained
    assert metrics.accuracy(y_test, before) > 0.9


def test_supplanter_poisons_change_predictions_to_the_supplanter(trained):
    base, x, y, x_test, y_test, before = trained
    clean_after = fine_tune(base, x, y, x_test)
    attack = SupplanterPoison(base, supplanter=0, epsilon=0.1, steps=10, rate=0.3)
    x_p, y_p, mask = attack.poison(x, y)
    assert mask.sum() == 90
    after = fine_tune(base, x_p, y_p, x_test)
    clean_ctt = metrics.ctt_rate(y_test, before, clean_after, 0, 10).overall
    attacked_ctt = metrics.ctt_rate(y_test, before, after, 0, 10).overall
    assert clean_ctt < 0.03
    assert attacked_ctt > 0.07
    assert metrics.accuracy(y_test, after) < metrics.accuracy(y_test, clean_after) - 0.05


def test_victim_poisons_break_the_victim_more_than_any_other_class(trained):
    base, x, y, x_test, y_test, before = trained
    attack = VictimPoison(base, victim=9, poison_label=0, epsilon=0.1, steps=10, rate=0.5)
    x_p, y_p, _ = attack.poison(x, y)
    cft = metrics.cft_rate(y_test, before, fine_tune(base, x_p, y_p, x_test), 10)
    others = np.delete(cft, 9)
    assert cft[9] > 0.12
    assert cft[9] > 2 * others.max()
