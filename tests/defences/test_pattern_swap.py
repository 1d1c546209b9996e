"""ClassPatternSwap: each training image gets a random class's pattern in place of its own."""

import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_poison import ClassPatternRemoval
from keras_poison import ClassPatternSwap
from keras_poison import SmoothClassPattern

NUM_CLASSES = 4


def mid_range_images(n=64, size=8, seed=0, dtype="float32"):
    """Images well inside [0, 1] with class means far apart, so no swap clips."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % NUM_CLASSES
    x = rng.uniform(0.35, 0.65, size=(n, size, size, 3))
    x += 0.08 * (y[:, None, None, None] - 1.5)  # a different mean per class
    return x.astype(dtype), y


def possible_outputs(swap, x, y):
    """`(n, K, ...)`: each image moved by `pattern_r - pattern_y`, for every class r."""
    table = swap.patterns
    offsets = table[None, :] - table[y][:, None]
    return np.clip(x[:, None] + offsets, 0, 1)


def drawn_classes(swap, x, y, out):
    """The class each output image was moved to (the one candidate it equals)."""
    candidates = possible_outputs(swap, x.astype("float32"), y).astype(x.dtype)
    equal = np.all(candidates == out[:, None], axis=tuple(range(2, candidates.ndim)))
    assert np.all(equal.sum(axis=1) >= 1), "an output is no image moved by a pattern difference"
    return equal


def one_pass(dataset):
    images, labels = [], []
    for element in dataset:
        images.append(element[0].numpy())
        labels.append(element[1].numpy())
    # Images `(n, H, W, C)` when batched, `(H, W, C)` when not.
    batched = len(dataset.element_spec[0].shape) == 4
    stack = np.concatenate if batched else np.stack
    return stack(images), stack(labels)


@pytest.mark.parametrize("batched", [False, True])
def test_every_image_is_moved_by_its_own_pattern_out_and_a_drawn_pattern_in(batched):
    x, y = mid_range_images()
    swap = ClassPatternSwap(NUM_CLASSES, seed=3).fit(x, y)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if batched:
        dataset = dataset.batch(10)
    out, labels = one_pass(dataset.apply(swap))
    np.testing.assert_array_equal(labels, y)
    # The stream's result is the NumPy formula clip(x - P[y] + P[r]) for one r each,
    # compared exactly (the same float32 ops in the same order).
    table = swap.patterns
    equal = drawn_classes(swap, x, y, out)
    drawn = equal.argmax(axis=1)
    expected = np.clip(x + (table[drawn] - table[y]), 0, 1)
    np.testing.assert_array_equal(out, expected)


def test_drawn_classes_are_uniform_and_an_own_class_draw_leaves_the_image_bit_identical():
    x, y = mid_range_images(n=800)
    swap = ClassPatternSwap(NUM_CLASSES, seed=0).fit(x, y)
    out, _ = one_pass(tf.data.Dataset.from_tensor_slices((x, y)).apply(swap))
    drawn = drawn_classes(swap, x, y, out).argmax(axis=1)
    counts = np.bincount(drawn, minlength=NUM_CLASSES)
    # 800 draws over 4 classes: each count within 5 standard deviations of 200.
    assert np.all(np.abs(counts - 200) < 5 * np.sqrt(800 * 0.25 * 0.75)), counts
    own = drawn == y
    assert own.sum() > 100
    np.testing.assert_array_equal(out[own], x[own])
    assert np.all(np.any(out[~own] != x[~own], axis=(1, 2, 3)))


def test_each_pass_draws_anew_and_a_new_stream_with_the_same_seed_repeats_the_passes():
    x, y = mid_range_images()
    swap = ClassPatternSwap(NUM_CLASSES, seed=5).fit(x, y)

    def two_passes():
        keras.utils.set_random_seed(11)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).apply(swap)
        return one_pass(dataset)[0], one_pass(dataset)[0]

    first, second = two_passes()
    assert not np.array_equal(first, second)
    again_first, again_second = two_passes()
    np.testing.assert_array_equal(first, again_first)
    np.testing.assert_array_equal(second, again_second)


def test_fit_draws_anew_each_epoch():
    x, y = mid_range_images(n=32)
    swap = ClassPatternSwap(NUM_CLASSES, seed=1).fit(x, y)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).apply(swap)
    seen = []

    class Spy(keras.layers.Layer):
        def call(self, inputs):
            seen.append(keras.ops.convert_to_numpy(inputs))
            return inputs

    model = keras.Sequential(
        [keras.Input((8, 8, 3)), Spy(), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    model.fit(dataset, epochs=2, verbose=0)
    assert len(seen) == 2
    assert not np.array_equal(seen[0], seen[1])
    for images in seen:
        drawn_classes(swap, x, y, images)


def test_one_hot_labels_extra_parts_and_dict_inputs_pass_through():
    x, y = mid_range_images(n=40)
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[y]
    weights = np.linspace(0.5, 1.5, len(y)).astype("float32")
    ids = np.arange(len(y))
    swap = ClassPatternSwap(NUM_CLASSES, seed=2).fit(x, one_hot)
    dataset = tf.data.Dataset.from_tensor_slices(({"image": x, "id": ids}, one_hot, weights))
    swapped = dataset.batch(8).apply(lambda ds: swap.transform(ds, image_key="image"))
    parts = list(swapped)
    np.testing.assert_array_equal(np.concatenate([p[0]["id"] for p in parts]), ids)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), one_hot)
    np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), weights)
    out = np.concatenate([p[0]["image"] for p in parts])
    drawn_classes(swap, x, y, out)  # each image is a swap of itself


def test_integer_images_stay_whole_grey_levels_in_range():
    x, y = mid_range_images(n=64)
    x8 = np.round(x * 255).astype("uint8")
    swap = ClassPatternSwap(NUM_CLASSES, seed=0).fit(x8, y)
    out, _ = one_pass(tf.data.Dataset.from_tensor_slices((x8, y)).apply(swap))
    assert out.dtype == np.uint8
    # uint8 arithmetic cannot tell a swap from a no-op beyond a grey level; check against floats.
    table = swap.patterns
    candidates = np.clip(np.round(x8[:, None].astype("float32") + (table[None] - table[y][:, None])), 0, 255)
    assert np.all(np.any(np.all(candidates == out[:, None], axis=(2, 3, 4)), axis=1))


def test_after_the_swap_no_class_mean_holds_its_smooth_class_pattern():
    # A smooth pattern passes ClassPatternRemoval's high-pass estimate; under the swap
    # the images of every label carry every class's pattern alike, so the mean of the
    # images of label c no longer leans towards pattern c.
    x, y = mid_range_images(n=2000, size=16)
    attack = SmoothClassPattern(num_classes=NUM_CLASSES, epsilon=16 / 255, seed=0)
    x_poisoned, _, _ = attack.poison(x, y)
    swap = ClassPatternSwap(NUM_CLASSES, seed=0).fit(x_poisoned, y)
    out, _ = one_pass(tf.data.Dataset.from_tensor_slices((x_poisoned, y)).batch(100).apply(swap))
    patterns = np.stack([(x_poisoned - x)[y == c][0] for c in range(NUM_CLASSES)])
    patterns -= patterns.mean(axis=0)

    def lean(images):
        """Per class: the projection of its mean image's deviation on its own pattern."""
        means = np.stack([images[y == c].mean(axis=0) for c in range(NUM_CLASSES)])
        deviations = means - means.mean(axis=0)
        return [float((deviations[c] * patterns[c]).sum() / (patterns[c] ** 2).sum())
                for c in range(NUM_CLASSES)]

    assert min(lean(x_poisoned)) > 0.9
    assert max(np.abs(lean(out))) < 0.15, lean(out)


def test_config_round_trip_and_serialization():
    swap = ClassPatternSwap(NUM_CLASSES, frequencies="high", kernel_size=5, value_range=(0, 1), seed=7)
    config = swap.get_config()
    assert config == {
        "num_classes": 4, "frequencies": "high", "kernel_size": 5,
        "value_range": [0.0, 1.0], "shrink": True, "seed": 7,
    }
    assert ClassPatternSwap.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(swap))
    assert isinstance(restored, ClassPatternSwap) and restored.get_config() == config


def test_patterns_are_those_of_the_removal_with_the_same_settings():
    x, y = mid_range_images()
    swap = ClassPatternSwap(NUM_CLASSES).fit(x, y)
    removal = ClassPatternRemoval(NUM_CLASSES, frequencies="all").fit(x, y)
    np.testing.assert_array_equal(swap.patterns, removal.patterns)
    np.testing.assert_array_equal(swap.weights, removal.weights)


def test_swapping_before_fitting_is_rejected():
    dataset = tf.data.Dataset.from_tensor_slices(mid_range_images())
    with pytest.raises(ValueError, match="not fitted"):
        ClassPatternSwap(NUM_CLASSES).transform(dataset)


def test_images_of_another_shape_are_rejected():
    x, y = mid_range_images()
    swap = ClassPatternSwap(NUM_CLASSES).fit(x, y)
    other = tf.data.Dataset.from_tensor_slices(mid_range_images(size=6))
    with pytest.raises(ValueError, match=r"shape \(8, 8, 3\).*Received: image shape \(6, 6, 3\)"):
        other.apply(swap)


def test_images_outside_the_range_are_an_error_not_a_clip():
    x, y = mid_range_images()
    swap = ClassPatternSwap(NUM_CLASSES, seed=0).fit(x, y)
    bright = tf.data.Dataset.from_tensor_slices((x * 2, y)).batch(8).apply(swap)
    with pytest.raises(tf.errors.InvalidArgumentError, match="value_range"):
        list(bright)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=4, frequencies="low"), "frequencies"),
        (dict(num_classes=4, seed=-1), "seed"),
        (dict(num_classes=4, seed=1.5), "seed"),
        (dict(num_classes=4, kernel_size=4), "kernel_size"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ClassPatternSwap(**kwargs)


def test_labels_outside_the_classes_are_rejected_when_fitting():
    x, y = mid_range_images()
    with pytest.raises(ValueError, match=r"labels in \[0, 4\)"):
        ClassPatternSwap(NUM_CLASSES).fit(x, y + 1)


@hypothesis.settings(deadline=None, max_examples=15)
@hypothesis.given(
    n=st.integers(8, 30),
    batch=st.integers(1, 9),
    size=st.integers(2, 6),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**31),
)
def test_any_shape_any_batching_moves_each_image_by_one_pattern_difference(n, batch, size, channels, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % NUM_CLASSES
    x = rng.uniform(0, 1, size=(n, size, size, channels)).astype("float32")
    swap = ClassPatternSwap(NUM_CLASSES, seed=seed).fit(x, y)
    out, labels = one_pass(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).apply(swap))
    np.testing.assert_array_equal(labels, y)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    drawn_classes(swap, x, y, out)


# ------------------------------------------------- regressions (hostile user) --


def test_only_classes_present_in_training_are_drawn():
    # Classes 4-9 have no images: swapping one in would only remove the own mean.
    x, y = mid_range_images(n=200)
    swap = ClassPatternSwap(num_classes=10, seed=0, shrink=False).fit(x, y)
    np.testing.assert_array_equal(swap.class_counts, [50, 50, 50, 50, 0, 0, 0, 0, 0, 0])
    out, _ = one_pass(tf.data.Dataset.from_tensor_slices((x, y)).apply(swap))
    table = swap.patterns
    candidates = np.clip(x[:, None] + (table[None] - table[y][:, None]), 0, 1)
    equal = np.all(candidates == out[:, None], axis=(2, 3, 4))
    # Every image equals a swap with a present class, and no absent class is ever needed.
    assert np.all(equal[:, :4].any(axis=1))
    drawn = equal[:, :4].argmax(axis=1)
    assert set(np.unique(drawn)) == {0, 1, 2, 3}


def test_an_own_class_draw_is_bit_identical_even_for_negative_zero():
    x, y = mid_range_images(n=200)
    x[:, 0, 0, 0] = -0.0
    swap = ClassPatternSwap(NUM_CLASSES, seed=0, value_range=(-1, 1)).fit(x, y)
    out, _ = one_pass(tf.data.Dataset.from_tensor_slices((x, y)).apply(swap))
    unchanged = np.all(out == x, axis=(1, 2, 3))
    assert unchanged.sum() > 20
    np.testing.assert_array_equal(out[unchanged].view(np.uint32), x[unchanged].view(np.uint32))


def test_a_range_integer_images_cannot_hold_is_refused_not_wrapped():
    x, y = mid_range_images(n=32)
    x8 = np.round(x * 255).astype("uint8")
    swap = ClassPatternSwap(NUM_CLASSES, seed=0, value_range=(0, 1000)).fit(x8, y)
    with pytest.raises(ValueError, match=r"value_range.*uint8 images can hold.*\[0, 255\]"):
        tf.data.Dataset.from_tensor_slices((x8, y)).apply(swap)
    int8 = (x8 // 2).astype("int8")
    with pytest.raises(ValueError, match="int8 images can hold"):
        tf.data.Dataset.from_tensor_slices((int8, y)).apply(ClassPatternSwap(NUM_CLASSES).fit(int8, y))
    with pytest.raises(ValueError, match="int8 images can hold"):
        ClassPatternRemoval(NUM_CLASSES).fit(int8, y).remove(int8, y)


def test_images_of_another_range_than_fitted_are_refused():
    x, y = mid_range_images(n=32)
    x8 = np.round(x * 255).astype("uint8")
    swap = ClassPatternSwap(NUM_CLASSES, seed=0).fit(x8, y)
    with pytest.raises(ValueError, match=r"fitted on uint8 images.*Received: float32 images"):
        tf.data.Dataset.from_tensor_slices((x, y)).apply(swap)
    removal = ClassPatternRemoval(NUM_CLASSES).fit(x8, y)
    with pytest.raises(ValueError, match=r"fitted on uint8 images.*Received: float32 images"):
        removal.remove(x, y)
    with pytest.raises(ValueError, match=r"fitted on uint8 images"):
        tf.data.Dataset.from_tensor_slices((x, y)).apply(removal)
    # Another float dtype of the same range is fine.
    one_pass(tf.data.Dataset.from_tensor_slices((x.astype("float64"), y)).apply(
        ClassPatternSwap(NUM_CLASSES, seed=0).fit(x, y)))


def test_large_integer_images_are_shifted_exactly():
    rng = np.random.default_rng(0)
    y = np.arange(32) % NUM_CLASSES
    x = (rng.integers(2**28, 2**30, size=(32, 5, 5, 3)) | 1).astype("int32")
    swap = ClassPatternSwap(NUM_CLASSES, seed=0, value_range=(0, 2**31 - 1)).fit(x, y)
    out, _ = one_pass(tf.data.Dataset.from_tensor_slices((x, y)).apply(swap))
    table = swap.patterns.astype("float64")
    candidates = np.round(x[:, None].astype("float64") + (table[None] - table[y][:, None]))
    assert np.all(np.any(np.all(candidates == out[:, None], axis=(2, 3, 4)), axis=1))
    removal = ClassPatternRemoval(NUM_CLASSES, value_range=(0, 2**31 - 1)).fit(x, y)
    removal.patterns[:] = 0  # nothing to remove: every pixel must come back as it was
    np.testing.assert_array_equal(removal.remove(x, y)[0], x)


@pytest.mark.parametrize("labels", ["too_large", "negative", "fractional"])
def test_stream_labels_outside_the_classes_are_named_errors(labels):
    x, y = mid_range_images(n=16)
    swap = ClassPatternSwap(NUM_CLASSES, seed=0).fit(x, y)
    removal = ClassPatternRemoval(NUM_CLASSES).fit(x, y)
    bad = {"too_large": y + NUM_CLASSES, "negative": y - 1,
           "fractional": y.astype("float32") + 0.5}[labels]
    match = "whole numbers" if labels == "fractional" else r"labels in \[0, 4\)"
    for transform in (swap, removal):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            one_pass(tf.data.Dataset.from_tensor_slices((x, bad)).batch(4).apply(transform))


def test_float16_images_at_a_range_edge_are_accepted_as_the_attacks_accept_them():
    x, y = mid_range_images(n=32)
    x16 = np.clip(x, 0, 0.7).astype("float16")  # 0.7 is held as 0.70019
    assert float(x16.max()) > 0.7
    swap = ClassPatternSwap(NUM_CLASSES, seed=0, value_range=(0, 0.7)).fit(x16, y)
    out, _ = one_pass(tf.data.Dataset.from_tensor_slices((x16, y)).apply(swap))
    assert out.dtype == np.float16 and float(out.max()) <= float(np.float16(0.7))
    removal = ClassPatternRemoval(NUM_CLASSES, value_range=(0, 0.7)).fit(x16, y)
    removal.remove(x16, y)
