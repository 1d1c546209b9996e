"""`models.resnet50`: the class-oriented paper's ImageNet model, at test sizes.

ResNet-50 is built on tiny 32x32 inputs (keras.applications' minimum) so
that every test stays fast; the layers are those of the 224x224 model.
"""

import random

import keras
import numpy as np
import pytest

import keras_poison as kp
from keras_poison import models

SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def model():
    return models.resnet50(input_shape=SHAPE, num_classes=10, seed=0)


def images(n=4, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


def test_outputs_probabilities_through_a_logits_layer(model):
    assert model.name == "resnet50" and model.output_shape == (None, 10)
    logits = model.get_layer("logits")
    assert isinstance(logits, keras.layers.Dense)
    assert logits.get_config()["activation"] == "linear"
    assert logits.input.shape == (None, 2048)
    assert model.layers[-1].name == "probabilities"
    x = images()
    expected = keras.ops.convert_to_numpy(
        keras.ops.softmax(keras.Model(model.inputs[0], logits.output)(x))
    )
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-6)


def test_is_keras_resnet50_with_its_layers_not_nested(model):
    names = [layer.name for layer in model.layers]
    assert "conv1_conv" in names and "conv5_block3_out" in names and "avg_pool" in names
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53  # 49 in the main path + 4 projection shortcuts


def test_logit_function_finds_the_logits(model):
    x = images()
    found = kp.logit_function(model)(x)
    direct = keras.Model(model.inputs[0], model.get_layer("logits").output)(x, training=False)
    np.testing.assert_allclose(found, direct, rtol=1e-5, atol=1e-6)


def test_top5_accuracy_is_reported_beside_accuracy(model):
    y = np.arange(4) % 10
    result = model.evaluate(images(), y, verbose=0, return_dict=True)
    assert {"accuracy", "top5_accuracy"} <= set(result)
    assert result["top5_accuracy"] >= result["accuracy"]


def test_no_top5_with_five_classes_or_fewer():
    small = models.resnet50(input_shape=SHAPE, num_classes=5, seed=0)
    result = small.evaluate(images(), np.arange(4) % 5, verbose=0, return_dict=True)
    assert "top5_accuracy" not in result and "accuracy" in result


def test_one_hot_labels_use_top_k_categorical_accuracy():
    onehot = models.resnet50(input_shape=SHAPE, num_classes=6, label_format="one_hot", seed=0)
    y = keras.utils.to_categorical(np.arange(4) % 6, 6)
    result = onehot.evaluate(images(), y, verbose=0, return_dict=True)
    assert result["top5_accuracy"] >= result["accuracy"]
    assert isinstance(onehot.loss, keras.losses.CategoricalCrossentropy)


def test_top5_metric_counts_a_label_among_the_five_largest():
    metric = models.top5_metric()
    metric.update_state([0, 6], [[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]] * 2)
    assert float(metric.result()) == 0.5  # 6 is in the top five, 0 is not


def test_same_seed_builds_identical_weights_and_restores_python_random():
    state = random.getstate()
    a = models.resnet50(input_shape=SHAPE, num_classes=3, seed=7, compile=False)
    assert random.getstate() == state
    b = models.resnet50(input_shape=SHAPE, num_classes=3, seed=7, compile=False)
    c = models.resnet50(input_shape=SHAPE, num_classes=3, seed=8, compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_layer("conv1_conv").kernel, c.get_layer("conv1_conv").kernel)


def test_rejects_images_smaller_than_32():
    with pytest.raises(ValueError, match=">= 32"):
        models.resnet50(input_shape=(16, 16, 3), num_classes=10)


def test_rejects_a_flat_input_shape():
    with pytest.raises(ValueError, match="3 dimensions"):
        models.resnet50(input_shape=(1024,), num_classes=10)


def test_rejects_one_class():
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet50(input_shape=SHAPE, num_classes=1)


# ----------------------------------------------------------------------
# Crafting on it.


def test_supplanter_poisons_stay_in_value_range_and_step_budget(model):
    x = images(3, seed=1)
    y = np.array([1, 2, 3])
    attack = kp.SupplanterPoison(
        model, supplanter=0, epsilon=0.05, steps=2, count=1, value_range=(0.0, 1.0),
        batch_size=2,
    )
    poisons = attack.craft(x, y)
    assert poisons.images.shape == x.shape and poisons.images.dtype == np.float32
    assert poisons.images.min() >= 0.0 and poisons.images.max() <= 1.0
    change = np.abs(poisons.images - x).reshape(3, -1).max(axis=1)
    assert np.all(change > 0)
    assert np.all(change <= 0.05 * poisons.steps_taken + 1e-6)
    assert np.all(poisons.labels == 0)


def test_uint8_seeds_come_back_uint8_in_range(model):
    x = np.round(images(2, seed=2) * 255).astype(np.uint8)
    attack = kp.SupplanterPoison(model, supplanter=0, epsilon=8, steps=1, count=1)
    poisons = attack.craft(x, np.array([4, 5]))
    assert poisons.images.dtype == np.uint8
    change = np.abs(poisons.images.astype(int) - x.astype(int)).reshape(2, -1).max(axis=1)
    assert np.all(change <= 8 * poisons.steps_taken)
    assert np.all(change > 0)


def test_crafter_output_converts_each_batch_as_converting_the_whole():
    """`output=` (per-batch conversion) gives what converting afterwards gives."""
    from keras_poison.attacks.crafting import SignedGradientCrafter

    small = models.lenet5(input_shape=(12, 12, 1), num_classes=3, seed=0)
    crafter = SignedGradientCrafter(
        kp.logit_function(small), 20.0, 2, 1.0, "two_logit", (0.0, 255.0)
    )
    x = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 1)).astype(np.uint8)
    args = (np.array([0, 1, 2, 0, 1], "int32"), np.array([1, 2, 0, 2, 0], "int32"), np.zeros(5, bool))
    floats, taken = crafter.craft(x.astype("float32"), *args, batch_size=2)
    rounded, taken_too = crafter.craft(
        x, *args, batch_size=2, output=(lambda b: np.round(b).astype(np.uint8), np.uint8)
    )
    assert rounded.dtype == np.uint8
    np.testing.assert_array_equal(rounded, np.round(floats).astype(np.uint8))
    np.testing.assert_array_equal(taken, taken_too)
