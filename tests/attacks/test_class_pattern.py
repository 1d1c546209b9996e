import numpy as np
import pytest
import tensorflow as tf

from keras_poison import ClassPatternNoise


def images(n=40, dtype="uint8", low=20, high=236, shape=(8, 8, 3)):
    rng = np.random.default_rng(0)
    return rng.integers(low, high, size=(n, *shape)).astype(dtype)


def test_perturbation_stays_within_epsilon_for_uint8_images():
    x = images()
    y = np.arange(40) % 4
    x_p, _, _ = ClassPatternNoise(4, epsilon=6, seed=1).poison(x, y)
    assert np.abs(x_p.astype(int) - x.astype(int)).max() <= 6


def test_perturbation_stays_within_epsilon_for_float_images():
    x = images().astype("float32") / 255.0
    y = np.arange(40) % 4
    x_p, _, _ = ClassPatternNoise(4, epsilon=4 / 255, seed=1).poison(x, y)
    assert np.abs(x_p - x).max() <= 4 / 255 + 1e-7


def test_every_image_of_a_class_gets_the_same_pattern():
    x = images(dtype="float32") / 255.0
    y = np.arange(40) % 4
    attack = ClassPatternNoise(4, epsilon=0.03, seed=2)
    x_p, _, _ = attack.poison(x, y)
    deltas = x_p.astype("float64") - x
    patterns = attack.patterns((8, 8, 3))
    for c in range(4):
        np.testing.assert_allclose(deltas[y == c], np.broadcast_to(patterns[c], deltas[y == c].shape), atol=1e-6)
    assert not np.allclose(patterns[0], patterns[1])


def test_pattern_is_noise_plus_a_per_channel_colour_bias():
    attack = ClassPatternNoise(3, epsilon=1.0, seed=0, bias_ratio=0.5)
    patterns = attack.patterns((16, 16, 3))
    means = patterns.mean(axis=(1, 2))  # per class and channel
    # The colour bias shifts each channel's mean well away from zero noise.
    assert np.abs(means).max() > 0.1
    assert np.all(np.abs(patterns) <= 1.0)
    only_noise = ClassPatternNoise(3, epsilon=1.0, seed=0, bias_ratio=0.0).patterns((16, 16, 3))
    assert np.abs(only_noise.mean(axis=(1, 2))).max() < 0.1


def test_labels_are_untouched():
    x = images()
    y = np.arange(40) % 4
    _, y_p, _ = ClassPatternNoise(4, epsilon=8).poison(x, y)
    np.testing.assert_array_equal(y_p, y)


def test_fraction_poisons_exactly_that_share():
    x = images(n=200)
    y = np.arange(200) % 4
    _, _, mask = ClassPatternNoise(4, epsilon=8, fraction=0.25, seed=3).poison(x, y)
    assert mask.sum() == 50


def test_values_stay_inside_the_value_range():
    x = np.concatenate([np.zeros((10, 4, 4, 3)), np.ones((10, 4, 4, 3))]).astype("float32")
    y = np.arange(20) % 2
    x_p, _, _ = ClassPatternNoise(2, epsilon=0.2).poison(x, y)
    assert x_p.min() >= 0.0 and x_p.max() <= 1.0


def test_custom_value_range_for_standardized_images():
    x = (np.random.default_rng(0).uniform(-1, 1, (10, 4, 4, 1))).astype("float32")
    y = np.arange(10) % 2
    attack = ClassPatternNoise(2, epsilon=0.1, value_range=(-1, 1))
    x_p, _, mask = attack.poison(x, y)
    assert mask.all() and x_p.min() >= -1 and x_p.max() <= 1


def test_flat_grayscale_images_are_supported():
    x = images(n=20, shape=(64,))
    y = np.arange(20) % 2
    x_p, _, mask = ClassPatternNoise(2, epsilon=5).poison(x, y)
    assert x_p.shape == x.shape and mask.all()


def test_image_out_of_range_in_a_stream_raises_when_iterated():
    x = np.full((4, 2, 2, 3), 2.0, "float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(4, "int64")))
    with pytest.raises(tf.errors.InvalidArgumentError, match="value_range"):
        list(ClassPatternNoise(2, epsilon=0.1)(ds))


def test_unselected_images_keep_every_bit_including_signed_zeros():
    # Unselected examples add a -0.0 row instead of going through a select:
    # -0.0 and +0.0 pixels must come out with their sign bits unchanged.
    x = np.where(images(dtype="float32") > 128, 0.5, -0.0).astype("float32")
    x[::2, 0, 0, 0] = 0.0
    y = np.arange(40) % 4
    attack = ClassPatternNoise(4, epsilon=0.1, fraction=0.5, seed=3)
    x_p, _, mask = attack.poison(x, y)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    x_s = np.concatenate([b.numpy() for b, _ in attack.transform(stream)])
    assert mask.sum() == 20
    untouched = ~mask
    assert x_p[untouched].tobytes() == x[untouched].tobytes()
    assert x_s.tobytes() == x_p.tobytes()


def test_int32_images_above_float32_precision_are_shifted_exactly():
    # Pixels above 2**24 are not representable in float32; the pattern is
    # added in integers, so every changed pixel moves by exactly its pattern.
    base = 2**24 + 1
    x = (base + images(dtype="int64", low=0, high=1000)).astype("int32")
    y = np.arange(40) % 4
    attack = ClassPatternNoise(4, epsilon=5, fraction=0.5, value_range=(0, 2**25))
    x_p, _, mask = attack.poison(x, y)
    patterns = attack.patterns(x.shape[1:], "int32").astype("int64")
    expected = x.astype("int64") + patterns[y]
    assert np.array_equal(x_p[mask].astype("int64"), expected[mask])
    assert x_p[~mask].tobytes() == x[~mask].tobytes()


def test_integer_images_stay_on_the_grey_levels_inside_a_fractional_range():
    x = np.concatenate([np.full((10, 4, 4, 3), 3), np.full((10, 4, 4, 3), 250)]).astype("uint8")
    y = np.arange(20) % 2
    x_p, _, _ = ClassPatternNoise(2, epsilon=8, value_range=(2.5, 250.5)).poison(x, y)
    assert x_p.min() >= 3 and x_p.max() <= 250


def test_integer_images_below_a_fractional_low_are_rejected():
    x = np.full((4, 2, 2, 3), 2, "uint8")
    with pytest.raises(ValueError, match="value_range"):
        ClassPatternNoise(2, epsilon=2, value_range=(2.5, 250)).poison(x, np.zeros(4, "int64"))
