"""ImageAugmentation, seed_defences() and RestoredWeightsCheck."""

import os
import re
import warnings

import keras
import numpy as np
import pytest

import keras_poison
from keras_poison import ImageAugmentation
from keras_poison import LabelSmoothingCrossentropy
from keras_poison import RestoredWeightsCheck
from keras_poison import seed_defences

IMAGES = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype("float32")


def as_numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def test_augmentation_is_identity_at_inference():
    layer = ImageAugmentation(seed=0)
    np.testing.assert_array_equal(as_numpy(layer(IMAGES, training=False)), IMAGES)


def test_augmentation_changes_images_in_training_and_stays_in_range():
    out = as_numpy(ImageAugmentation(seed=0)(IMAGES, training=True))
    assert out.shape == IMAGES.shape
    assert not np.allclose(out, IMAGES)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_augmentation_respects_a_0_255_value_range():
    images = IMAGES * 255.0
    out = as_numpy(ImageAugmentation(value_range=(0, 255), seed=0)(images, training=True))
    assert out.max() <= 255.0 and out.min() >= 0.0
    assert out.max() > 1.0  # not squashed to [0, 1]


def test_flip_only_augmentation_mirrors_images_left_right():
    layer = ImageAugmentation(brightness=0.0, contrast=0.0, horizontal_flip=True, seed=3)
    out = as_numpy(layer(IMAGES, training=True))
    for original, augmented in zip(IMAGES, out):
        assert np.array_equal(augmented, original) or np.array_equal(
            augmented, original[:, ::-1]
        )
    assert not np.array_equal(out, IMAGES)  # some flipped


def test_translation_only_shifts_content_and_is_identity_at_inference():
    # A bright square on black: a shift moves it, keeps its size, and the
    # mean brightness barely changes (edges are reflected, not zero-filled).
    images = np.zeros((8, 32, 32, 1), "float32")
    images[:, 12:20, 12:20] = 1.0
    layer = ImageAugmentation(brightness=0.0, contrast=0.0, horizontal_flip=False,
                              translation=0.125, seed=0)
    np.testing.assert_array_equal(as_numpy(layer(images, training=False)), images)
    out = as_numpy(layer(images, training=True))
    centres = [np.argwhere(image[..., 0] > 0.5).mean(axis=0) for image in out]
    moved = [np.abs(centre - 15.5).max() for centre in centres]
    assert max(moved) > 0.5 and max(moved) <= 4.5  # at most 4 pixels, 0.125 of 32
    assert np.all(np.abs(out.sum(axis=(1, 2, 3)) - 64) < 8)


def test_augmentation_with_everything_off_is_identity_in_training():
    layer = ImageAugmentation(brightness=0.0, contrast=0.0, horizontal_flip=False)
    np.testing.assert_array_equal(as_numpy(layer(IMAGES, training=True)), IMAGES)


def test_model_with_augmentation_saves_and_loads_without_custom_objects(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        ImageAugmentation(brightness=0.2, contrast=0.3, translation=0.1, seed=1),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", loss=LabelSmoothingCrossentropy(0.1))
    model.fit(IMAGES, np.arange(16) % 3, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.layers[0]
    assert isinstance(layer, ImageAugmentation)
    assert layer.get_config() == model.layers[0].get_config()
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0))


def test_augmentation_config_round_trip():
    layer = ImageAugmentation(brightness=0.3, contrast=0.0, value_range=(0, 255), seed=5)
    clone = ImageAugmentation.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("kwargs,name", [
    ({"brightness": 1.5}, "brightness"),
    ({"contrast": -0.1}, "contrast"),
    ({"translation": 1.0}, "translation"),
    ({"translation": -0.1}, "translation"),
    ({"value_range": (1, 0)}, "value_range"),
])
def test_augmentation_bad_arguments_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ImageAugmentation(**kwargs)


@pytest.mark.parametrize("kwargs,name", [
    ({"horizontal_flip": "yes"}, "horizontal_flip"),
    ({"value_range": None}, "value_range"),
    ({"brightness": "0.1"}, "brightness"),
])
def test_augmentation_wrong_types_are_rejected(kwargs, name):
    with pytest.raises(TypeError, match=name):
        ImageAugmentation(**kwargs)


# ----------------------------------------------------------- seed_defences


def test_seed_defences_are_the_seed_report_settings():
    defences = seed_defences()
    assert isinstance(defences.augmentation, ImageAugmentation)
    assert defences.loss.label_smoothing == pytest.approx(0.1)
    stopper = defences.callbacks[0]
    assert isinstance(stopper, keras.callbacks.EarlyStopping)
    assert (stopper.monitor, stopper.patience, stopper.restore_best_weights) == (
        "val_loss", 5, True
    )
    assert isinstance(defences.callbacks[1], RestoredWeightsCheck)
    assert defences.callbacks[1].early_stopping is stopper


def test_seed_defences_train_a_model_with_sparse_labels():
    defences = seed_defences(seed=0, patience=1)
    model = keras.Sequential([
        keras.Input((8, 8, 3)), defences.augmentation, keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", loss=defences.loss, metrics=["accuracy"])
    y = np.arange(16) % 3
    history = model.fit(IMAGES, y, validation_data=(IMAGES, y), epochs=3, verbose=0,
                        callbacks=defences.callbacks)
    assert 1 <= len(history.history["loss"]) <= 3


def test_seed_defences_reject_bad_arguments():
    with pytest.raises(ValueError, match="patience"):
        seed_defences(patience=-1)
    with pytest.raises(ValueError, match="label_smoothing"):
        seed_defences(label_smoothing=1.0)


def _run_checked(val_losses, val_accuracies, initial_epoch=0):
    """Drives EarlyStopping + RestoredWeightsCheck through a fake training run."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(10, activation="softmax")])
    stopper = keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)
    check = RestoredWeightsCheck(stopper)
    callbacks = keras.callbacks.CallbackList([stopper, check], model=model)
    callbacks.on_train_begin()
    for epoch, (loss, acc) in enumerate(zip(val_losses, val_accuracies), start=initial_epoch):
        callbacks.on_epoch_end(epoch, {"val_loss": loss, "val_accuracy": acc})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callbacks.on_train_end()
    return check, [w for w in caught if "near chance" in str(w.message)]


def test_restored_weights_check_warns_when_early_stopping_restores_chance_weights():
    # The seed recipe's trap: val_loss lowest at epoch 1, accuracy climbing after.
    check, warned = _run_checked([2.4, 2.9, 3.1, 3.2, 3.0, 3.3, 3.4], [0.11, 0.2, 0.3, 0.35, 0.4, 0.4, 0.45])
    assert check.restored_epoch == 0 and check.near_chance
    assert len(warned) == 1 and "epoch 1" in str(warned[0].message)


def test_restored_weights_check_reads_the_restored_epoch_of_a_resumed_fit():
    # fit(initial_epoch=2): EarlyStopping.best_epoch counts from 0, not from this fit.
    check, warned = _run_checked([2.4, 2.9, 3.1, 3.2, 3.0, 3.3], [0.11, 0.9, 0.9, 0.9, 0.9, 0.9],
                                 initial_epoch=2)
    assert check.restored_epoch == 2 and check.near_chance
    assert len(warned) == 1 and "epoch 3" in str(warned[0].message)


def test_restored_weights_check_is_quiet_when_restored_weights_learned():
    check, warned = _run_checked([2.0, 1.5, 1.2, 1.3], [0.3, 0.45, 0.55, 0.54])
    assert check.restored_epoch == 2 and not check.near_chance
    assert not warned


def test_restored_weights_check_config_rebuilds_its_early_stopping():
    stopper = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=7,
                                            restore_best_weights=True, start_from_epoch=3)
    config = keras.saving.serialize_keras_object(RestoredWeightsCheck(stopper, margin=0.1))
    clone = keras.saving.deserialize_keras_object(config)
    assert (clone.early_stopping.monitor, clone.early_stopping.patience,
            clone.early_stopping.start_from_epoch, clone.margin) == ("val_accuracy", 7, 3, 0.1)


def test_restored_weights_check_needs_an_early_stopping():
    with pytest.raises(TypeError, match="EarlyStopping"):
        RestoredWeightsCheck(keras.callbacks.History())


def test_defences_are_exported_at_the_top_level():
    for name in ("ImageAugmentation", "seed_defences", "SeedDefences", "PoisonMonitor",
                 "RestoredWeightsCheck", "ClassPatternRemoval"):
        assert hasattr(keras_poison, name)


# --------------------------------------------------------- ColourCentering


def test_colour_centering_removes_any_constant_colour_shift_exactly():
    from keras_poison import ColourCentering

    bias = np.array([0.08, -0.03, 0.05], "float32")
    layer = ColourCentering()
    np.testing.assert_allclose(as_numpy(layer(IMAGES + bias)), as_numpy(layer(IMAGES)), atol=1e-6)
    centred = as_numpy(layer(IMAGES))
    np.testing.assert_allclose(centred.mean(axis=(1, 2)), 0.0, atol=1e-6)


def test_colour_centering_keeps_the_image_structure():
    from keras_poison import ColourCentering

    centred = as_numpy(ColourCentering()(IMAGES))
    expected = IMAGES - IMAGES.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(centred, expected, atol=1e-6)


def test_model_with_colour_centering_saves_and_loads_without_custom_objects(tmp_path):
    from keras_poison import ColourCentering

    model = keras.Sequential([keras.Input((8, 8, 3)), ColourCentering(), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], ColourCentering)
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0))


def test_seed_defences_can_leave_out_the_horizontal_flip_for_digits():
    from keras_poison import seed_defences

    assert seed_defences().augmentation.horizontal_flip
    assert not seed_defences(horizontal_flip=False).augmentation.horizontal_flip


def small_model(*front_layers):
    """A tiny classifier of `IMAGES` with `front_layers` in front."""
    return keras.Sequential([keras.Input((8, 8, 3)), *front_layers, keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])


def saved_and_loaded(model, tmp_path):
    """`model` through a `.keras` file, checked to predict the same."""
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0),
                               atol=1e-6)
    return loaded


def test_class_pattern_defences_remove_a_pattern_and_its_colour_bias():
    from keras_poison import ClassPatternNoise
    from keras_poison import class_pattern_defences

    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, size=(600, 8, 8, 3)).astype("float32")
    y = np.arange(600) % 2
    x_poisoned, _, _ = ClassPatternNoise(num_classes=2, epsilon=0.1, seed=0).poison(x, y)
    defences = class_pattern_defences(num_classes=2, seed=0)
    x_cleaned, _ = defences.removal.fit(x_poisoned, y).remove(x_poisoned, y)
    augmentation, centering = defences.layers

    def seen_by_the_model(images):
        # What reaches the model at inference: augmentation is identity there.
        return as_numpy(centering(augmentation(images, training=False)))

    both = np.abs(seen_by_the_model(x_cleaned) - seen_by_the_model(x)).mean()
    removal_only = np.abs(x_cleaned - x).mean()
    centering_only = np.abs(seen_by_the_model(x_poisoned) - seen_by_the_model(x)).mean()
    # Each part removes what the other leaves: removal the fine pattern,
    # centering the constant colour bias.
    assert both < 0.8 * min(removal_only, centering_only)


def test_model_with_class_pattern_defence_layers_saves_and_loads(tmp_path):
    from keras_poison import ColourCentering
    from keras_poison import class_pattern_defences

    defences = class_pattern_defences(num_classes=3, value_range=(0, 255), horizontal_flip=False)
    assert not defences.layers[0].horizontal_flip
    assert defences.removal.value_range == (0.0, 255.0)
    model = small_model(*defences.layers)
    loaded = saved_and_loaded(model, tmp_path)
    assert [type(layer) for layer in loaded.layers[:2]] == [ImageAugmentation, ColourCentering]


def test_class_pattern_defences_reject_bad_arguments():
    from keras_poison import class_pattern_defences

    with pytest.raises(ValueError, match="num_classes"):
        class_pattern_defences(num_classes=1)
    with pytest.raises(ValueError, match="value_range"):
        class_pattern_defences(num_classes=2, value_range=(1, 0))


def test_class_pattern_swap_defences_train_on_swapped_images_and_save(tmp_path):
    import tensorflow as tf

    from keras_poison import ClassPatternSwap
    from keras_poison import ColourCentering
    from keras_poison import SmoothClassPattern
    from keras_poison import class_pattern_swap_defences

    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, size=(200, 8, 8, 3)).astype("float32")
    y = np.arange(200) % 2
    x_poisoned, _, _ = SmoothClassPattern(num_classes=2, epsilon=0.1, seed=0).poison(x, y)
    defences = class_pattern_swap_defences(num_classes=2, value_range=(0, 1), seed=3)
    assert isinstance(defences.swap, ClassPatternSwap)
    assert defences.swap.get_config()["seed"] == 3
    train = tf.data.Dataset.from_tensor_slices((x_poisoned, y)).apply(defences.swap.fit(x_poisoned, y))
    swapped = np.stack([image.numpy() for image, _ in train])
    moved = np.any(swapped != x_poisoned, axis=(1, 2, 3))
    # About half the images draw the other class's pattern; the rest stay bit-identical.
    assert 60 < moved.sum() < 140
    model = small_model(*defences.layers)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.batch(32), epochs=1, verbose=0)
    loaded = saved_and_loaded(model, tmp_path)
    assert [type(layer) for layer in loaded.layers[:2]] == [ImageAugmentation, ColourCentering]


def test_class_pattern_swap_defences_reject_bad_arguments():
    from keras_poison import class_pattern_swap_defences

    with pytest.raises(ValueError, match="num_classes"):
        class_pattern_swap_defences(num_classes=1)
    with pytest.raises(ValueError, match="value_range"):
        class_pattern_swap_defences(num_classes=2, value_range=(1, 0))
    with pytest.raises(TypeError, match="seed"):
        class_pattern_swap_defences(num_classes=2, seed="0")


def test_label_flip_defences_pair_augmentation_with_generalized_cross_entropy(tmp_path):
    from keras_poison import GeneralizedCrossentropy
    from keras_poison import label_flip_defences

    defences = label_flip_defences(q=0.5, seed=0)
    assert isinstance(defences.augmentation, ImageAugmentation)
    assert isinstance(defences.loss, GeneralizedCrossentropy)
    assert defences.loss.get_config()["q"] == 0.5
    model = small_model(defences.augmentation)
    model.compile("adam", loss=defences.loss)
    model.fit(IMAGES, np.arange(16) % 3, epochs=1, verbose=0)
    loaded = saved_and_loaded(model, tmp_path)
    assert loaded.loss.get_config()["q"] == 0.5


def test_label_flip_defences_reject_bad_arguments():
    from keras_poison import label_flip_defences

    with pytest.raises(ValueError, match="q"):
        label_flip_defences(q=0.0)
    with pytest.raises(ValueError, match="value_range"):
        label_flip_defences(value_range=(1, 1))


# ------------------------------------------------------- ShortcutSqueezing


def test_squeezing_grays_images_with_the_luma_weights_in_training_and_inference():
    from keras_poison import ShortcutSqueezing

    luma = IMAGES @ np.array([0.2989, 0.5870, 0.1140], "float32")
    squeeze = ShortcutSqueezing(jpeg_quality=None)
    for training in (False, True):
        gray = as_numpy(squeeze(IMAGES, training=training))
        assert gray.shape == IMAGES.shape
        for channel in range(3):
            np.testing.assert_allclose(gray[..., channel], luma, atol=1e-5)


def test_squeezing_compresses_each_image_with_jpeg_in_training_only():
    import tensorflow as tf

    from keras_poison import ShortcutSqueezing

    squeeze = ShortcutSqueezing(grayscale=False, jpeg_quality=10)
    np.testing.assert_array_equal(as_numpy(squeeze(IMAGES, training=False)), IMAGES)
    trained = as_numpy(squeeze(IMAGES, training=True))
    expected = np.stack([tf.image.adjust_jpeg_quality(image, 10).numpy() for image in IMAGES])
    np.testing.assert_allclose(trained, expected, atol=1e-6)
    assert trained.min() >= 0.0 and trained.max() <= 1.0


def test_squeezing_a_0_255_image_is_the_unit_result_scaled():
    from keras_poison import ShortcutSqueezing

    unit = as_numpy(ShortcutSqueezing()(IMAGES, training=True))
    scaled = as_numpy(ShortcutSqueezing(value_range=(0, 255))(IMAGES * 255.0, training=True))
    np.testing.assert_allclose(scaled, unit * 255.0, atol=1e-3)


def test_squeezing_refuses_images_outside_its_value_range():
    from keras_poison import ShortcutSqueezing

    with pytest.raises(Exception, match="value_range"):
        ShortcutSqueezing()(IMAGES * 255.0, training=True)


def test_squeezing_removes_a_fine_class_pattern_but_not_a_smooth_one():
    # The paper's claim and the layer's documented failure, on the patterns
    # themselves: what of the perturbation still reaches the model.
    from keras_poison import ClassPatternNoise
    from keras_poison import ShortcutSqueezing
    from keras_poison import SmoothClassPattern

    rng = np.random.default_rng(1)
    x = rng.uniform(0.25, 0.75, size=(64, 32, 32, 3)).astype("float32")
    x = as_numpy(keras.layers.AveragePooling2D(3, strides=1, padding="same")(x))  # photo-like
    y = np.arange(64) % 4
    squeeze = ShortcutSqueezing()

    def surviving_fraction(attack):
        # Share of the pattern's gray component that JPEG leaves in the
        # training images (the projection; JPEG's own quantisation noise is
        # uncorrelated with the pattern).
        poisoned, _, _ = attack.poison(x, y)
        left = as_numpy(squeeze(poisoned, training=True)) - as_numpy(squeeze(x, training=True))
        gray = as_numpy(squeeze(poisoned, training=False)) - as_numpy(squeeze(x, training=False))
        return float((left * gray).sum() / (gray * gray).sum())

    assert surviving_fraction(ClassPatternNoise(num_classes=4, epsilon=8 / 255, seed=0)) < 0.4
    assert surviving_fraction(SmoothClassPattern(num_classes=4, epsilon=8 / 255, seed=0)) > 0.6


def test_model_with_squeezing_trains_saves_and_loads(tmp_path):
    from keras_poison import ShortcutSqueezing

    model = small_model(ShortcutSqueezing(jpeg_quality=20))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(IMAGES, np.arange(16) % 3, epochs=1, batch_size=8, verbose=0)
    loaded = saved_and_loaded(model, tmp_path)
    assert isinstance(loaded.layers[0], ShortcutSqueezing)
    assert loaded.layers[0].get_config()["jpeg_quality"] == 20
    rebuilt = ShortcutSqueezing.from_config(ShortcutSqueezing(value_range=(0, 255)).get_config())
    assert rebuilt.value_range == (0.0, 255.0) and rebuilt.grayscale


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"jpeg_quality": 101}, ValueError, "jpeg_quality"),
        ({"jpeg_quality": -1}, ValueError, "jpeg_quality"),
        ({"jpeg_quality": 10.0}, TypeError, "jpeg_quality"),
        ({"jpeg_quality": True}, TypeError, "jpeg_quality"),
        ({"grayscale": False, "jpeg_quality": None}, ValueError, "nothing"),
        ({"value_range": (1, 0)}, ValueError, "value_range"),
    ],
)
def test_squeezing_bad_arguments_are_rejected(kwargs, error, name):
    from keras_poison import ShortcutSqueezing

    with pytest.raises(error, match=name):
        ShortcutSqueezing(**kwargs)


def test_squeezing_refuses_images_that_are_neither_gray_nor_rgb():
    from keras_poison import ShortcutSqueezing

    with pytest.raises(ValueError, match="1 or 3 channels"):
        ShortcutSqueezing()(np.zeros((2, 8, 8, 4), "float32"))


# ------------------------------------------------ SharpeningFrequencyFilter


def sharpened_reference(images, centre):
    """The fixed cross kernel of Kim & Sandoval-Segura, reflect-padded, in NumPy."""
    neighbour = (centre - 1.0) / 4.0
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    around = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2]
              + padded[:, 1:-1, 2:])
    return np.clip(centre * images - neighbour * around, 0.0, 1.0)


def low_passed_reference(images, keep=None, kept=None):
    """SciPy's orthonormal DCT, its lowest rows and columns kept (a share or counts)."""
    from scipy import fft

    rows, columns = kept or (int(images.shape[1] * keep), int(images.shape[2] * keep))
    coefficients = fft.dctn(images, axes=(1, 2), norm="ortho")
    mask = np.zeros_like(coefficients)
    mask[:, :rows, :columns] = 1.0
    return np.clip(fft.idctn(coefficients * mask, axes=(1, 2), norm="ortho"), 0.0, 1.0)


def test_sharpening_filter_is_the_identity_at_inference():
    from keras_poison import SharpeningFrequencyFilter

    layer = SharpeningFrequencyFilter(seed=0)
    np.testing.assert_array_equal(as_numpy(layer(IMAGES, training=False)), IMAGES)
    np.testing.assert_array_equal(as_numpy(layer(IMAGES)), IMAGES)


def test_fixed_sharpening_kernel_equals_the_numpy_convolution():
    from keras_poison import SharpeningFrequencyFilter

    layer = SharpeningFrequencyFilter(kernel_stddev=0.0, keep_frequencies=None)
    np.testing.assert_allclose(
        as_numpy(layer(IMAGES, training=True)), sharpened_reference(IMAGES, 2.5), atol=1e-5
    )
    flat = np.full((1, 8, 8, 3), 0.4, "float32")  # the kernel sums to 1
    np.testing.assert_allclose(as_numpy(layer(flat, training=True)), flat, atol=1e-6)


def test_frequency_filtering_equals_scipy_dct_low_pass():
    from keras_poison import SharpeningFrequencyFilter

    # centre 1 and no spread: the sharpening is the identity, only the filter acts.
    layer = SharpeningFrequencyFilter(sharpening_centre=1.0, kernel_stddev=0.0,
                                      keep_frequencies=0.5)
    np.testing.assert_allclose(
        as_numpy(layer(IMAGES, training=True)), low_passed_reference(IMAGES, 0.5), atol=1e-5
    )
    both = SharpeningFrequencyFilter(kernel_stddev=0.0, keep_frequencies=0.3)
    rect = IMAGES[:, :, :6]  # unequal height and width: their own cut-offs
    np.testing.assert_allclose(
        as_numpy(both(rect, training=True)),
        low_passed_reference(sharpened_reference(rect, 2.5), 0.3),
        atol=1e-5,
    )


def test_random_kernels_differ_per_image_and_follow_the_seed():
    from keras_poison import SharpeningFrequencyFilter

    twins = np.repeat(IMAGES[:1], 4, axis=0)
    out = as_numpy(SharpeningFrequencyFilter(keep_frequencies=None, seed=3)(twins, training=True))
    assert all(np.abs(out[0] - out[i]).max() > 1e-3 for i in range(1, 4))
    again = as_numpy(SharpeningFrequencyFilter(keep_frequencies=None, seed=3)(twins, training=True))
    np.testing.assert_array_equal(out, again)


def test_sharpening_undoes_part_of_a_blur():
    # Why it counters CUDA: a blurred image, sharpened, lies closer to the original.
    rng = np.random.default_rng(2)
    x = rng.uniform(0.2, 0.8, size=(8, 32, 32, 3)).astype("float32")
    x = as_numpy(keras.layers.AveragePooling2D(3, strides=1, padding="same")(x))
    blurred = 0.6 * x + 0.1 * (np.roll(x, 1, 1) + np.roll(x, -1, 1) + np.roll(x, 1, 2)
                               + np.roll(x, -1, 2))
    from keras_poison import SharpeningFrequencyFilter

    sharpened = as_numpy(SharpeningFrequencyFilter(kernel_stddev=0.0, keep_frequencies=None,
                                                   sharpening_centre=2.0)(blurred, training=True))
    assert np.abs(sharpened - x)[:, 1:-1, 1:-1].mean() < 0.8 * np.abs(blurred - x)[:, 1:-1, 1:-1].mean()


def test_sharpening_filter_on_0_255_images_is_the_unit_result_scaled():
    from keras_poison import SharpeningFrequencyFilter

    unit = as_numpy(SharpeningFrequencyFilter(kernel_stddev=0.0)(IMAGES, training=True))
    scaled = as_numpy(SharpeningFrequencyFilter(kernel_stddev=0.0, value_range=(0, 255))(
        IMAGES * 255.0, training=True))
    np.testing.assert_allclose(scaled, unit * 255.0, atol=1e-3)


def test_sharpening_filter_refuses_images_outside_its_value_range():
    from keras_poison import SharpeningFrequencyFilter

    with pytest.raises(Exception, match="value_range"):
        SharpeningFrequencyFilter()(IMAGES * 255.0, training=True)


def test_sharpening_filter_refuses_a_cut_off_that_keeps_no_frequency():
    from keras_poison import SharpeningFrequencyFilter

    with pytest.raises(ValueError, match="keep_frequencies.*0.125"):
        SharpeningFrequencyFilter(keep_frequencies=0.1)(IMAGES, training=True)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"sharpening_centre": 0.5}, ValueError, "sharpening_centre"),
        ({"sharpening_centre": "sharp"}, TypeError, "sharpening_centre"),
        ({"kernel_stddev": -0.1}, ValueError, "kernel_stddev"),
        ({"keep_frequencies": 0.0}, ValueError, "keep_frequencies"),
        ({"keep_frequencies": 1.5}, ValueError, "keep_frequencies"),
        ({"value_range": (1, 0)}, ValueError, "value_range"),
    ],
)
def test_sharpening_filter_bad_arguments_are_rejected(kwargs, error, name):
    from keras_poison import SharpeningFrequencyFilter

    with pytest.raises(error, match=name):
        SharpeningFrequencyFilter(**kwargs)


def test_model_with_sharpening_filter_trains_saves_and_loads(tmp_path):
    from keras_poison import SharpeningFrequencyFilter

    model = small_model(SharpeningFrequencyFilter(keep_frequencies=0.5, seed=1))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(IMAGES, np.arange(16) % 3, epochs=1, batch_size=8, verbose=0)
    loaded = saved_and_loaded(model, tmp_path)
    assert isinstance(loaded.layers[0], SharpeningFrequencyFilter)
    config = loaded.layers[0].get_config()
    assert config["keep_frequencies"] == 0.5 and config["seed"] == 1
    rebuilt = SharpeningFrequencyFilter.from_config(
        SharpeningFrequencyFilter(keep_frequencies=None, value_range=(0, 255)).get_config())
    assert rebuilt.keep_frequencies is None and rebuilt.value_range == (0.0, 255.0)


def test_shortcut_layers_refuse_what_they_cannot_filter_with_clear_errors():
    from keras_poison import SharpeningFrequencyFilter
    from keras_poison import ShortcutSqueezing

    layer = SharpeningFrequencyFilter()
    for shape in ((8, 8, 3), (2, 1, 9, 3)):
        with pytest.raises(ValueError, match="at least 2x2.*" + re.escape(str(shape))):
            layer(np.zeros(shape, "float32"), training=True)
    with pytest.raises(ValueError, match="batches of images"):
        ShortcutSqueezing()(np.zeros((8, 8, 3), "float32"), training=True)
    with pytest.raises(TypeError, match="grayscale"):
        ShortcutSqueezing(grayscale="False")
    assert ShortcutSqueezing(jpeg_quality=np.int64(20)).get_config()["jpeg_quality"] == 20


def test_frequency_cut_off_keeps_what_the_share_says_despite_float_error():
    from keras_poison import SharpeningFrequencyFilter

    x = np.random.default_rng(0).uniform(size=(1, 100, 100, 1)).astype("float32")
    layer = SharpeningFrequencyFilter(sharpening_centre=1.0, kernel_stddev=0.0,
                                      keep_frequencies=0.29)
    np.testing.assert_allclose(as_numpy(layer(x, training=True)),
                               low_passed_reference(x, kept=(29, 29)), atol=1e-4)


@pytest.mark.parametrize("make", [ImageAugmentation, keras_poison.ColourCentering])
def test_image_layers_refuse_grayscale_batches_without_a_channel_axis(make):
    # (B, H, W) would be read as one (H, W, C) image: one random draw for the
    # whole batch, flips along the wrong axis, means taken across the batch.
    gray = np.random.default_rng(0).uniform(size=(4, 6, 5)).astype("float32")
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\).*\(4, 6, 5\).*x\[\.\.\., None\]"):
        make()(gray, training=True) if make is ImageAugmentation else make()(gray)
    with pytest.raises(ValueError, match=r"input shape \(None, 6, 5\)"):
        keras.Sequential([keras.Input((6, 5)), make()])
    # With the channel axis the same images are treated one by one.
    centred = keras_poison.ColourCentering()(gray[..., None]).numpy()
    np.testing.assert_allclose(centred.mean(axis=(1, 2)), 0, atol=1e-6)
