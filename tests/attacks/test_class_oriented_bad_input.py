"""Bad input to the class-oriented attacks gets a clear error before any work."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_poison import SupplanterPoison
from keras_poison import VictimPoison

K = 3


@pytest.fixture(scope="module")
def model():
    inputs = keras.Input((2, 2, 1))
    logits = keras.layers.Dense(K)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Softmax()(logits))


X = np.full((6, 2, 2, 1), 0.5, "float32")
Y = np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("supplanter", [-1, 3, 10])
def test_supplanter_outside_the_classes(model, supplanter):
    with pytest.raises(ValueError, match=rf"`supplanter` in \[0, 3\).*supplanter={supplanter}"):
        SupplanterPoison(model, supplanter)


@pytest.mark.parametrize("argument", ["victim", "poison_label"])
def test_victim_or_poison_label_outside_the_classes(model, argument):
    kwargs = {"victim": 1, "poison_label": 0, argument: 7}
    with pytest.raises(ValueError, match=rf"`{argument}` in \[0, 3\).*{argument}=7"):
        VictimPoison(model, **kwargs)


def test_poison_label_equal_to_victim(model):
    with pytest.raises(ValueError, match="`poison_label` to differ from `victim`"):
        VictimPoison(model, victim=2, poison_label=2)


def test_class_given_as_float_is_a_type_error(model):
    with pytest.raises(TypeError, match="`supplanter`"):
        SupplanterPoison(model, 1.0)


@pytest.mark.parametrize("epsilon", [0, -0.1, "0.3"])
def test_epsilon_not_positive(model, epsilon):
    with pytest.raises(ValueError, match="`epsilon` > 0"):
        SupplanterPoison(model, 0, epsilon=epsilon)


@pytest.mark.parametrize("steps", [0, -2])
def test_steps_below_one(model, steps):
    with pytest.raises(ValueError, match=f"`steps` >= 1. Received: steps={steps}"):
        VictimPoison(model, 0, 1, steps=steps)


@pytest.mark.parametrize("rate", [0, 0.0, -0.5, 1.5])
def test_rate_outside_zero_one(model, rate):
    with pytest.raises(ValueError, match=r"`rate` in \(0, 1\]"):
        SupplanterPoison(model, 0, rate=rate)


def test_rate_and_count_together(model):
    with pytest.raises(ValueError, match="not both"):
        SupplanterPoison(model, 0, rate=0.2, count=3)


def test_unknown_objective(model):
    with pytest.raises(ValueError, match="`objective`"):
        SupplanterPoison(model, 0, objective="entropy")


def test_negative_lambda(model):
    with pytest.raises(ValueError, match="`lam` >= 0"):
        SupplanterPoison(model, 0, lam=-1)


@pytest.mark.parametrize("value_range", [(1, 0), (0.5, 0.5)])
def test_inverted_value_range(model, value_range):
    with pytest.raises(ValueError, match="`value_range` = \\(low, high\\) with low < high"):
        SupplanterPoison(model, 0, value_range=value_range)


@pytest.mark.parametrize("value_range", ["01", (0,), 1.0])
def test_value_range_not_a_pair(model, value_range):
    with pytest.raises(TypeError, match="`value_range` to be a pair"):
        SupplanterPoison(model, 0, value_range=value_range)


def test_seeds_only_from_the_supplanter_class(model):
    attack = SupplanterPoison(model, 0)
    with pytest.raises(ValueError, match="other than the supplanter"):
        attack.craft(X[Y == 0], Y[Y == 0])
    with pytest.raises(ValueError, match="at most 0 poisons"):
        SupplanterPoison(model, 0, count=1).poison(X[Y == 0], Y[Y == 0])
    with pytest.raises(ValueError, match="rounds to 0"):
        attack.poison(X[Y == 0], Y[Y == 0])


def test_victim_attack_without_victim_seeds(model):
    with pytest.raises(ValueError, match="seed of the victim class"):
        VictimPoison(model, 2, 0).craft(X[Y != 2], Y[Y != 2])


def test_images_outside_value_range(model):
    attack = SupplanterPoison(model, 0)
    with pytest.raises(ValueError, match=r"inside value_range=\(0.0, 1.0\).*values from"):
        attack.craft(X * 4, Y)
    with pytest.raises(ValueError, match="value_range"):
        SupplanterPoison(model, 0, value_range=(0.6, 1.0)).poison(X, Y)


def test_x_and_y_of_different_lengths(model):
    attack = SupplanterPoison(model, 0)
    with pytest.raises(ValueError, match=r"len\(x\)=6, len\(y\)=5"):
        attack.craft(X, Y[:5])
    with pytest.raises(ValueError, match=r"len\(x\)=6, len\(y\)=5"):
        attack.poison(X, Y[:5])


def test_labels_outside_the_model_classes(model):
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        SupplanterPoison(model, 0).craft(X, Y + 1)


def test_too_many_poisons_for_the_eligible_examples(model):
    with pytest.raises(ValueError, match="at most 4 poisons"):
        SupplanterPoison(model, 0, count=5).poison(X, Y)


def test_not_a_model():
    with pytest.raises(TypeError, match="`model` to be a keras.Model"):
        SupplanterPoison(lambda x: x, 0)


def test_not_a_dataset(model):
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        SupplanterPoison(model, 0).transform((X, Y))


def test_recraft_before_applying(model):
    with pytest.raises(ValueError, match="apply"):
        SupplanterPoison(model, 0).recraft(model)


def test_dataset_of_dicts(model):
    ds = tf.data.Dataset.from_tensor_slices({"image": X, "label": Y})
    with pytest.raises(TypeError, match="as_supervised"):
        SupplanterPoison(model, 0).transform(ds)


@pytest.mark.parametrize("attack", [SupplanterPoison, VictimPoison])
def test_explicit_default_rate_with_count_is_still_rejected(model, attack):
    # Regression: an explicit rate equal to the default was silently dropped.
    args = (0,) if attack is SupplanterPoison else (0, 1)
    rate = 0.1 if attack is SupplanterPoison else 0.5
    with pytest.raises(ValueError, match="not both"):
        attack(model, *args, rate=rate, count=2)
    assert attack(model, *args, count=2).rate is None
    assert attack(model, *args).rate == rate


def test_regression_a_sub_grey_level_step_on_integer_images_is_refused():
    # epsilon=0.3 on uint8 images rounded every step away: the "poisons" were
    # the seeds relabelled, with no warning.
    import keras

    from keras_poison import DirectGradientPoison, SupplanterPoison

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 1)).astype("uint8")
    y = np.array([1, 2, 1, 2, 1, 2])
    with pytest.raises(ValueError, match=r"`epsilon` of at least one grey level .*epsilon=76.5"):
        SupplanterPoison(model, supplanter=0, epsilon=0.3, from_logits=True).poison(x, y)
    normal = (x[:3], y[:3])
    with pytest.raises(ValueError, match="`gamma` of at least one grey level"):
        DirectGradientPoison(model, normal_data=normal, from_logits=True).poison(x, y)
    # In grey levels it crafts, and moves pixels.
    poisons = SupplanterPoison(model, supplanter=0, epsilon=8, steps=2, from_logits=True).craft(x, y)
    assert np.abs(poisons.images.astype(int) - x).max() > 0
