import keras
import numpy as np
import pytest

from keras_poison import models

# Small inputs keep every test fast; each builder's minimum image size.
BUILDERS = [
    pytest.param(models.vgg_like, (8, 8, 3), id="vgg_like"),
    pytest.param(models.lenet5, (12, 12, 1), id="lenet5"),
    pytest.param(models.vgg9, (8, 8, 3), id="vgg9"),
]


def weight_layers(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def random_images(shape, n=4, seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


@pytest.mark.parametrize("builder, shape", BUILDERS)
def test_output_is_probabilities_of_num_classes(builder, shape):
    model = builder(input_shape=shape, num_classes=5, seed=0)
    probs = model.predict(random_images(shape), verbose=0)
    assert probs.shape == (4, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("builder, shape", BUILDERS)
def test_softmax_of_logits_layer_equals_output(builder, shape):
    model = builder(input_shape=shape, num_classes=3, seed=0)
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    x = random_images(shape)
    logits = logits_model.predict(x, verbose=0)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5)
    assert model.get_layer("logits").get_config()["activation"] == "linear"


@pytest.mark.parametrize("builder, shape", BUILDERS)
def test_model_compiles_with_sparse_loss_by_default(builder, shape):
    model = builder(input_shape=shape, num_classes=3)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_one_hot_label_format_uses_categorical_loss():
    model = models.lenet5(input_shape=(12, 12, 1), label_format="one_hot")
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)


def test_compile_false_returns_uncompiled_model():
    model = models.lenet5(input_shape=(12, 12, 1), compile=False)
    assert not model.compiled


def test_learning_rate_reaches_adam():
    model = models.vgg9(input_shape=(8, 8, 3), learning_rate=0.01)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


def test_vgg_like_has_six_batch_normalised_convs_and_two_dense_layers():
    model = models.vgg_like(input_shape=(8, 8, 3), compile=False)
    convs = weight_layers(model, keras.layers.Conv2D)
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert len(weight_layers(model, keras.layers.BatchNormalization)) == 7
    dense = weight_layers(model, keras.layers.Dense)
    assert [d.units for d in dense] == [128, 10]
    rates = [d.rate for d in weight_layers(model, keras.layers.Dropout)]
    assert rates == pytest.approx([0.2, 0.3, 0.4, 0.5])


def test_lenet5_has_two_convs_and_three_dense_layers():
    model = models.lenet5(compile=False)
    convs = weight_layers(model, keras.layers.Conv2D)
    dense = weight_layers(model, keras.layers.Dense)
    assert [c.filters for c in convs] == [6, 16]
    assert [d.units for d in dense] == [120, 84, 10]
    assert model.get_layer("flatten").output.shape[-1] == 400


def test_vgg9_has_nine_weight_layers():
    model = models.vgg9(input_shape=(8, 8, 3), compile=False)
    convs = weight_layers(model, keras.layers.Conv2D)
    dense = weight_layers(model, keras.layers.Dense)
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256]
    assert [d.units for d in dense] == [256, 256, 10]


def test_lenet5_reshapes_flat_square_input():
    model = models.lenet5(input_shape=(144,), num_classes=4, compile=False)
    assert model.get_layer("reshape").output.shape[1:] == (12, 12, 1)
    assert model.predict(random_images((144,)), verbose=0).shape == (4, 4)


def test_two_dimensional_input_gets_channel_axis():
    model = models.vgg_like(input_shape=(8, 8), compile=False)
    assert model.get_layer("reshape").output.shape[1:] == (8, 8, 1)


def test_same_seed_gives_identical_initial_weights():
    first = models.vgg9(input_shape=(8, 8, 3), seed=7, compile=False)
    second = models.vgg9(input_shape=(8, 8, 3), seed=7, compile=False)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_seeded_layers_of_equal_shape_get_distinct_weights():
    # On 8x8 inputs both hidden dense kernels are 256x256; one seed shared
    # by their initialisers would make them equal.
    model = models.vgg9(input_shape=(8, 8, 3), seed=7, compile=False)
    first = model.get_layer("dense1").kernel.numpy()
    second = model.get_layer("dense2").kernel.numpy()
    assert first.shape == second.shape
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("builder, shape", BUILDERS)
def test_two_step_fit_on_tiny_data_runs(builder, shape):
    model = builder(input_shape=shape, num_classes=3, seed=0)
    x = random_images(shape, n=8)
    y = np.arange(8) % 3
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_saved_model_loads_with_identical_predictions(tmp_path):
    model = models.vgg_like(input_shape=(8, 8, 3), num_classes=3, seed=0)
    model.fit(random_images((8, 8, 3), n=4), np.array([0, 1, 2, 0]), verbose=0)
    path = tmp_path / "vgg_like.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = random_images((8, 8, 3), seed=1)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6
    )
    assert loaded.get_layer("logits") is not None


@pytest.mark.parametrize("num_classes", [1, 0])
def test_rejects_num_classes_below_two(num_classes):
    with pytest.raises(ValueError, match=f"Received: num_classes={num_classes}"):
        models.vgg_like(num_classes=num_classes)


def test_rejects_non_integer_num_classes():
    with pytest.raises(TypeError, match="num_classes"):
        models.lenet5(num_classes=10.0)


def test_rejects_flat_input_that_is_not_square():
    with pytest.raises(ValueError, match=r"input_shape=\(3072,\)"):
        models.lenet5(input_shape=(3072,))


def test_rejects_image_smaller_than_architecture_allows():
    with pytest.raises(ValueError, match=r">= 12.*input_shape=\(8, 8, 1\)"):
        models.lenet5(input_shape=(8, 8, 1))


def test_rejects_unknown_label_format():
    with pytest.raises(ValueError, match="label_format='categorical'"):
        models.vgg9(label_format="categorical")


def test_rejects_wrong_number_of_dropout_rates():
    with pytest.raises(ValueError, match="dropout"):
        models.vgg_like(dropout=(0.2, 0.3))


def test_rejects_dropout_rate_of_one():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        models.vgg9(dropout=1.0)
