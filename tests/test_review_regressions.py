"""Regression tests from a hostile-user review of the image-folder, DGM and ensemble code."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_poison import DirectGradientPoison
from keras_poison import datasets


def _write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(image).numpy())


# ----------------------------------------------------------------------
# write_image_folder: splits written one at a time share their labels.


def test_a_test_split_without_the_high_classes_keeps_the_train_splits_labels(tmp_path):
    # Train has 11 classes ("00".."10"); test only 0..9. Default names of
    # width 1 for the test split ("0".."9") beside "00".."10" made 21
    # classes and shifted the labels of both splits, silently.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (22, 4, 4, 3), dtype=np.uint8)
    y_train, y_test = np.arange(22) % 11, np.arange(10) % 10
    datasets.write_image_folder(x, y_train, tmp_path, split="train")
    datasets.write_image_folder(x[:10], y_test, tmp_path, split="test")
    assert len(datasets.image_folder_class_names(tmp_path)) == 11
    (x_a, y_a), (x_b, y_b) = datasets.load_image_folder(tmp_path)
    assert sorted(y_a.tolist()) == sorted(y_train.tolist())
    assert sorted(y_b.tolist()) == sorted(y_test.tolist())


def test_class_names_that_would_shift_another_splits_labels_are_refused(tmp_path):
    x = np.zeros((2, 4, 4, 1), np.uint8)
    datasets.write_image_folder(x, [0, 1], tmp_path, split="train", class_names=["cat", "dog"])
    with pytest.raises(ValueError, match="other labels"):
        datasets.write_image_folder(x, [0, 1], tmp_path, split="test")
    with pytest.raises(ValueError, match="other labels"):
        datasets.write_image_folder(
            x, [0, 1], tmp_path, split="val", class_names=["ant", "cat"]
        )
    # The same names, or a prefix of them, are fine.
    datasets.write_image_folder(x, [0, 0], tmp_path, split="test", class_names=["cat"])
    assert datasets.image_folder_class_names(tmp_path) == ["cat", "dog"]


def test_four_channels_with_jpegs_is_a_clear_error(tmp_path):
    rgb = np.zeros((5, 5, 3), np.uint8)
    _write_png(str(tmp_path / "train" / "a" / "0.png"), rgb)
    with open(tmp_path / "train" / "a" / "1.JPG", "wb") as f:
        f.write(tf.io.encode_jpeg(rgb).numpy())
    with pytest.raises(ValueError, match="channels.*JPEG"):
        datasets.load_image_folder(tmp_path, split="train", channels=4)
    with pytest.raises(ValueError, match="channels.*JPEG"):
        datasets.image_folder_dataset(tmp_path, "train", channels=4)
    x, _ = datasets.load_image_folder(tmp_path, split="train", channels=3)
    assert x.shape == (2, 5, 5, 3)


def test_grayscale_rgba_and_jpeg_files_decode_to_the_channels_asked(tmp_path):
    rng = np.random.default_rng(0)
    _write_png(str(tmp_path / "train" / "a" / "g.png"), rng.integers(0, 256, (5, 5, 1), dtype=np.uint8))
    _write_png(str(tmp_path / "train" / "a" / "r.PNG"), rng.integers(0, 256, (5, 5, 4), dtype=np.uint8))
    os.makedirs(tmp_path / "train" / "b")
    with open(tmp_path / "train" / "b" / "j.jpg", "wb") as f:
        f.write(tf.io.encode_jpeg(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).numpy())
    for channels in (1, 3):
        x, y = datasets.load_image_folder(tmp_path, split="train", channels=channels)
        assert x.shape == (3, 5, 5, channels) and sorted(y.tolist()) == [0, 0, 1]


# ----------------------------------------------------------------------
# DirectGradientPoison: seeds and normal set on one scale.


def _tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3, 3, 1))
    h = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, h)


def test_dgm_refuses_uint8_seeds_beside_a_float_normal_set_without_value_range():
    # uint8 seeds take the range (0, 255), which float normal images in
    # [0, 1] pass: the poisons were crafted on two scales, silently.
    rng = np.random.default_rng(0)
    normal = (rng.uniform(size=(6, 3, 3, 1)).astype("float32"), np.arange(6) % 3)
    attack = DirectGradientPoison(_tiny_model(), normal_data=normal, rounds=1, count=2)
    x = rng.integers(0, 256, (6, 3, 3, 1), dtype=np.uint8)
    with pytest.raises(ValueError, match="value_range"):
        attack.poison(x, np.arange(6) % 3)
    with pytest.raises(ValueError, match="value_range"):
        attack.normal_loss(x, np.arange(6) % 3)


def test_dgm_takes_mixed_dtypes_with_an_explicit_value_range():
    rng = np.random.default_rng(0)
    normal = (rng.uniform(0, 255, size=(6, 3, 3, 1)).astype("float32"), np.arange(6) % 3)
    attack = DirectGradientPoison(
        _tiny_model(), normal_data=normal, rounds=1, count=2, value_range=(0, 255), gamma=8
    )
    x = rng.integers(0, 256, (6, 3, 3, 1), dtype=np.uint8)
    x_p, _, mask = attack.poison(x, np.arange(6) % 3)
    assert x_p.dtype == np.uint8 and int(mask.sum()) == 2
