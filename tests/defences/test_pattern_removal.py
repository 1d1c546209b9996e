"""ClassPatternRemoval: estimates class-wise patterns and removes them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_poison import ClassPatternNoise
from keras_poison import ClassPatternRemoval
from keras_poison import SmoothClassPattern
from keras_poison import datasets


def natural_like_images(n=600, size=16, seed=0):
    """Smooth random images (blurred noise), like photographs at this scale."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(size=(n, size, size, 3)).astype("float32")
    smooth = tf.nn.avg_pool2d(noise, ksize=5, strides=1, padding="SAME").numpy()
    smooth = (smooth - smooth.mean()) * 3 + 0.5
    return np.clip(smooth, 0, 1).astype("float32"), np.arange(n) % 4


def high_pass(images):
    return images - tf.nn.avg_pool2d(images, ksize=3, strides=1, padding="SAME").numpy()


def test_estimates_the_noise_part_of_each_class_pattern():
    x, y = natural_like_images()
    attack = ClassPatternNoise(num_classes=4, epsilon=0.05, bias_ratio=0.0, seed=1)
    x_poisoned, _, _ = attack.poison(x, y)
    removal = ClassPatternRemoval(num_classes=4).fit(x_poisoned, y)
    true = high_pass(attack.patterns(x.shape[1:]))
    for c in range(4):
        correlation = np.corrcoef(true[c].ravel(), removal.patterns[c].ravel())[0, 1]
        assert correlation > 0.8
    cleaned, _ = removal.remove(x_poisoned, y)
    assert np.abs(cleaned - x).mean() < 0.6 * np.abs(x_poisoned - x).mean()


def test_removes_almost_nothing_from_clean_smooth_images():
    x, y = natural_like_images()
    removal = ClassPatternRemoval(num_classes=4).fit(x, y)
    cleaned, _ = removal.remove(x, y)
    assert np.abs(cleaned - x).max() < 0.01
    assert np.all(removal.signal_to_noise < 3)


def test_poisoned_classes_stand_far_above_sampling_noise():
    x, y = natural_like_images()
    x_poisoned, _, _ = ClassPatternNoise(num_classes=4, epsilon=0.05, seed=1).poison(x, y)
    removal = ClassPatternRemoval(num_classes=4).fit(x_poisoned, y)
    assert np.all(removal.signal_to_noise > 4) and np.all(removal.weights > 0.75)


def test_labels_come_back_unchanged_and_images_keep_dtype_and_range():
    x, y = natural_like_images(n=200)
    x8 = (x * 255).astype("uint8")
    x_poisoned, _, _ = ClassPatternNoise(num_classes=4, epsilon=12, seed=0).poison(x8, y)
    y_one_hot = np.eye(4, dtype="float32")[y]
    removal = ClassPatternRemoval(num_classes=4).fit(x_poisoned, y_one_hot)
    cleaned, labels = removal.remove(x_poisoned, y_one_hot)
    assert cleaned.dtype == np.uint8 and labels is y_one_hot


def test_dataset_transform_matches_numpy_for_batched_unbatched_and_one_hot():
    x, y = natural_like_images(n=100)
    x_poisoned, _, _ = ClassPatternNoise(num_classes=4, epsilon=0.05, seed=1).poison(x, y)
    removal = ClassPatternRemoval(num_classes=4).fit(x_poisoned, y)
    expected, _ = removal.remove(x_poisoned, y)
    elements = tf.data.Dataset.from_tensor_slices((x_poisoned, y))
    one_hot = tf.data.Dataset.from_tensor_slices((x_poisoned, np.eye(4, dtype="float32")[y]))
    for ds in (elements, elements.batch(7), one_hot, one_hot.batch(32)):
        out = np.concatenate(
            [np.reshape(a, (-1, *x.shape[1:])) for a, _ in ds.apply(removal).as_numpy_iterator()]
        )
        np.testing.assert_array_equal(out, expected)


def test_fit_from_a_dataset_equals_fit_from_arrays():
    x, y = natural_like_images(n=300)
    x_poisoned, _, _ = ClassPatternNoise(num_classes=4, epsilon=0.05, seed=1).poison(x, y)
    from_arrays = ClassPatternRemoval(num_classes=4).fit(x_poisoned, y)
    ds = tf.data.Dataset.from_tensor_slices((x_poisoned, y)).batch(64)
    from_dataset = ClassPatternRemoval(num_classes=4).fit(ds)
    np.testing.assert_allclose(from_dataset.patterns, from_arrays.patterns, atol=1e-6)


def _digit_model_accuracy(x, y, x_test, y_test):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(inputs)
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=20, batch_size=64, verbose=0)
    return model.evaluate(x_test, y_test, verbose=0)[1]


def test_removal_with_a_trusted_reference_wins_back_digit_accuracy():
    (x_train, y_train), (x_test, y_test) = datasets.load("digits")
    x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
    reference = (x_train[:300], y_train[:300])
    x_train, y_train = x_train[300:], y_train[300:]
    attack = ClassPatternNoise(num_classes=10, epsilon=0.3, bias_ratio=0.5, seed=0)
    x_poisoned, _, _ = attack.poison(x_train, y_train)
    removal = ClassPatternRemoval(num_classes=10).fit(x_poisoned, y_train, reference=reference)
    x_cleaned, _ = removal.remove(x_poisoned, y_train)
    poisoned = _digit_model_accuracy(x_poisoned, y_train, x_test, y_test)
    cleaned = _digit_model_accuracy(x_cleaned, y_train, x_test, y_test)
    assert cleaned > poisoned + 0.03


def _class_dependent_energy(images, labels, num_classes):
    """Energy of the class means about their average: what a class shortcut can use."""
    means = np.stack([images[labels == c].mean(axis=0) for c in range(num_classes)])
    return float(((means - means.mean(axis=0)) ** 2).sum())


def test_whole_class_means_remove_a_smooth_pattern_the_high_pass_misses():
    x, y = natural_like_images()
    attack = SmoothClassPattern(num_classes=4, epsilon=0.05, seed=2)
    x_poisoned, _, _ = attack.poison(x, y)
    left = {}
    for frequencies in ("high", "all"):
        # No shrinkage: 150 noisy images a class would shrink the whole-mean estimate.
        removal = ClassPatternRemoval(num_classes=4, frequencies=frequencies, shrink=False)
        cleaned, labels = removal.fit(x_poisoned, y).remove(x_poisoned, y)
        np.testing.assert_array_equal(labels, y)
        # What a class shortcut could still use: the spread of the class means.
        left[frequencies] = _class_dependent_energy(cleaned, y, 4)
    poisoned = _class_dependent_energy(x_poisoned, y, 4)
    assert left["high"] > 0.7 * poisoned  # smooth: the high-pass estimate sees little of it
    assert left["all"] < 0.05 * poisoned  # the class means are made equal


def test_whole_class_mean_removal_streams_like_numpy():
    x, y = natural_like_images(n=120, size=8)
    removal = ClassPatternRemoval(num_classes=4, frequencies="all").fit(x, y)
    expected, _ = removal.remove(x, y)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).apply(removal)
    got = np.concatenate([images.numpy() for images, _ in stream])
    np.testing.assert_array_equal(got, expected)


def test_unknown_frequencies_are_rejected():
    with pytest.raises(ValueError, match=r'"high" or "all".*frequencies=\'low\''):
        ClassPatternRemoval(num_classes=4, frequencies="low")


def test_config_round_trip():
    removal = ClassPatternRemoval(num_classes=5, kernel_size=5, value_range=(0, 255), shrink=False,
                                  frequencies="all")
    assert ClassPatternRemoval.from_config(removal.get_config()).get_config() == removal.get_config()


# ------------------------------------------------------------------ bad input

X, Y = natural_like_images(n=40, size=8)


def test_removing_before_fitting_is_rejected():
    with pytest.raises(ValueError, match="not fitted"):
        ClassPatternRemoval(num_classes=4).remove(X, Y)


def test_images_of_another_shape_are_rejected():
    removal = ClassPatternRemoval(num_classes=4).fit(X, Y)
    with pytest.raises(ValueError, match=r"shape \(8, 8, 3\)"):
        removal.remove(np.zeros((4, 9, 9, 3), "float32"), Y[:4])


def test_labels_outside_range_are_rejected():
    with pytest.raises(ValueError, match=r"labels in \[0, 4\)"):
        ClassPatternRemoval(num_classes=4).fit(X, Y + 1)


def test_even_kernel_is_rejected():
    with pytest.raises(ValueError, match="odd `kernel_size`"):
        ClassPatternRemoval(num_classes=4, kernel_size=4)


def test_array_images_without_labels_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        ClassPatternRemoval(num_classes=4).fit(X)


def test_a_single_class_is_rejected():
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassPatternRemoval(num_classes=4).fit(X, np.zeros(40, int))


def test_reference_missing_a_class_is_rejected():
    with pytest.raises(ValueError, match=r"class\(es\) \[3\]"):
        ClassPatternRemoval(num_classes=4).fit(X, Y, reference=(X, Y % 3))


def test_reference_that_is_not_a_pair_is_rejected():
    with pytest.raises(TypeError, match="reference"):
        ClassPatternRemoval(num_classes=4).fit(X, Y, reference=X)


def test_float64_images_are_untouched_where_the_pattern_is_zero():
    # A float32 round trip changed every float64 pixel (hostile-user pass).
    rng = np.random.default_rng(0)
    x64 = rng.uniform(0.2, 0.8, (100, 6, 6, 1))
    y = np.arange(100) % 2
    removal = ClassPatternRemoval(2).fit(x64, y)
    assert not removal.patterns.any()
    cleaned, _ = removal.remove(x64, y)
    assert cleaned.dtype == np.float64
    np.testing.assert_array_equal(cleaned, x64)
    streamed = np.stack([image for image, _ in
                         tf.data.Dataset.from_tensor_slices((x64, y)).apply(removal)
                         .as_numpy_iterator()])
    np.testing.assert_array_equal(streamed, x64)


def test_arrays_refuse_a_one_hot_width_other_than_num_classes_like_the_stream():
    x = np.random.default_rng(0).uniform(0.2, 0.8, (30, 6, 6, 1)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(30) % 2]  # width 3, two classes used
    with pytest.raises(ValueError, match="width num_classes=2. Received: width 3"):
        ClassPatternRemoval(2).fit(x, y)
