"""Image folders (DIR/<split>/<class>/<image>) through tfds' ImageFolder.

Tiny real images: the packaged 8x8 digits, a few per class, written with
`write_image_folder` into `tmp_path`.
"""

import doctest
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_poison import datasets


def few_digits(per_class=2, classes=3):
    """`per_class` real digits of each of the first `classes` classes, (n, 8, 8, 1) uint8."""
    x, y = datasets.load("digits", split="train")
    keep = np.concatenate([np.flatnonzero(y == k)[:per_class] for k in range(classes)])
    return x[keep], y[keep]


def sort_by_content(x, y):
    """Arrays in an order that depends only on the examples (the reader shuffles)."""
    keys = [image.tobytes() + bytes([label]) for image, label in zip(x, y)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return x[order], y[order]


def write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(image).numpy())


def test_written_folder_reads_back_the_same_images_and_labels(tmp_path):
    x, y = few_digits()
    datasets.write_image_folder(x, y, tmp_path, split="train")
    x_read, y_read = datasets.load_image_folder(tmp_path, split="train", channels=1)
    assert x_read.dtype == np.uint8 and y_read.dtype == np.int64
    got, expected = sort_by_content(x_read, y_read), sort_by_content(x, y)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_layout_is_split_then_class_folders_of_pngs(tmp_path):
    x, y = few_digits(per_class=1, classes=2)
    split_dir = datasets.write_image_folder(x, y, tmp_path, split="test")
    assert split_dir == os.path.join(str(tmp_path), "test")
    assert sorted(os.listdir(split_dir)) == ["0", "1"]
    assert all(name.endswith(".png") for name in os.listdir(os.path.join(split_dir, "0")))


def test_default_loads_train_and_test_with_shared_labels(tmp_path):
    x, y = few_digits(per_class=2, classes=3)
    datasets.write_image_folder(x, y, tmp_path, split="train")
    # The test split lacks class 1 but keeps its folder, so labels still agree.
    datasets.write_image_folder(x[y != 1], y[y != 1], tmp_path, split="test", class_names=["0", "1", "2"])
    (x_train, y_train), (x_test, y_test) = datasets.load_image_folder(tmp_path, channels=1)
    assert sorted(y_train.tolist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(y_test.tolist()) == [0, 0, 2, 2]
    assert datasets.image_folder_class_names(tmp_path) == ["0", "1", "2"]


def test_grayscale_files_decode_to_three_channels_by_default(tmp_path):
    x, y = few_digits(per_class=1, classes=2)
    datasets.write_image_folder(x, y, tmp_path)
    x_read, _ = datasets.load_image_folder(tmp_path, split="train")
    assert x_read.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(x_read[..., 0], x_read[..., 2])


def test_write_resizes_to_image_size(tmp_path):
    x, y = few_digits(per_class=1, classes=2)
    datasets.write_image_folder(x, y, tmp_path, image_size=(32, 24))
    x_read, _ = datasets.load_image_folder(tmp_path, split="train", channels=1)
    assert x_read.shape == (2, 32, 24, 1)


def test_upsampling_a_constant_image_keeps_its_value(tmp_path):
    x = np.full((1, 4, 4, 3), 77, np.uint8)
    datasets.write_image_folder(x, [0], tmp_path, image_size=(16, 16))
    x_read, _ = datasets.load_image_folder(tmp_path, split="train")
    assert np.all(x_read == 77)


def test_class_names_name_the_folders(tmp_path):
    x, y = few_digits(per_class=1, classes=3)
    datasets.write_image_folder(x, y, tmp_path, class_names=["cat", "dog", "fox"])
    assert datasets.image_folder_class_names(tmp_path) == ["cat", "dog", "fox"]
    _, y_read = datasets.load_image_folder(tmp_path, split="train")
    assert sorted(y_read.tolist()) == [0, 1, 2]


def test_default_class_names_sort_in_label_order_past_ten_classes(tmp_path):
    x = np.zeros((12, 8, 8, 1), np.uint8)
    datasets.write_image_folder(x, np.arange(12), tmp_path)
    names = datasets.image_folder_class_names(tmp_path)
    assert names == [f"{k:02d}" for k in range(12)]


def test_stream_yields_the_arrays_examples_in_the_same_order(tmp_path):
    x, y = few_digits()
    datasets.write_image_folder(x, y, tmp_path)
    x_arrays, y_arrays = datasets.load_image_folder(tmp_path, split="train")
    ds = datasets.image_folder_dataset(tmp_path, split="train")
    assert ds.element_spec[0].shape == (8, 8, 3)
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int64
    images, labels = zip(*ds.as_numpy_iterator())
    np.testing.assert_array_equal(np.stack(images), x_arrays)
    np.testing.assert_array_equal(np.array(labels), y_arrays)


def test_stream_order_is_the_same_on_every_pass(tmp_path):
    x, y = few_digits()
    datasets.write_image_folder(x, y, tmp_path)
    ds = datasets.image_folder_dataset(tmp_path)
    first = [label for _, label in ds.as_numpy_iterator()]
    assert first == [label for _, label in ds.as_numpy_iterator()]


def test_stream_resizes_and_batches(tmp_path):
    x, y = few_digits()
    datasets.write_image_folder(x, y, tmp_path)
    ds = datasets.image_folder_dataset(tmp_path, image_size=(16, 16)).batch(4)
    images, labels = next(iter(ds))
    assert images.shape == (4, 16, 16, 3) and images.dtype == tf.uint8
    assert labels.shape == (4,)


# ----------------------------------------------------------------------
# Mixed sizes.


def mixed_size_folder(tmp_path):
    write_png(str(tmp_path / "train" / "a" / "small.png"), np.zeros((8, 8, 3), np.uint8))
    write_png(str(tmp_path / "train" / "b" / "large.png"), np.zeros((10, 12, 3), np.uint8))
    return tmp_path


def test_mixed_sizes_without_resize_are_rejected_naming_the_files(tmp_path):
    folder = mixed_size_folder(tmp_path)
    with pytest.raises(ValueError, match="image_size") as error:
        datasets.load_image_folder(folder, split="train")
    assert "small.png" in str(error.value) and "large.png" in str(error.value)


def test_mixed_sizes_with_resize_load(tmp_path):
    folder = mixed_size_folder(tmp_path)
    x, y = datasets.load_image_folder(folder, split="train", image_size=(9, 9))
    assert x.shape == (2, 9, 9, 3)
    assert sorted(y.tolist()) == [0, 1]


def test_stream_of_mixed_sizes_without_resize_stops_naming_the_file(tmp_path):
    folder = mixed_size_folder(tmp_path)
    ds = datasets.image_folder_dataset(folder, split="train")
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_size"):
        list(ds.as_numpy_iterator())


# ----------------------------------------------------------------------
# Bad folders.


def test_nonexistent_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load_image_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.image_folder_dataset(tmp_path / "missing")


def test_a_file_as_path_is_rejected(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="which is a file"):
        datasets.load_image_folder(path)


def test_empty_folder_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no subfolders"):
        datasets.load_image_folder(tmp_path)


def test_split_without_class_folders_is_rejected(tmp_path):
    write_png(str(tmp_path / "train" / "0001.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="no class subfolders, and 1 images directly"):
        datasets.load_image_folder(tmp_path, split="train")
    with pytest.raises(ValueError, match="no class subfolders"):
        datasets.image_folder_dataset(tmp_path, split="train")


def test_class_folders_without_a_split_level_say_how_to_fix(tmp_path):
    write_png(str(tmp_path / "cat" / "1.png"), np.zeros((8, 8, 3), np.uint8))
    write_png(str(tmp_path / "dog" / "1.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="move them under DIR/train/"):
        datasets.load_image_folder(tmp_path, split="train")


def test_missing_split_lists_the_splits(tmp_path):
    x, y = few_digits(per_class=1, classes=2)
    datasets.write_image_folder(x, y, tmp_path, split="train")
    with pytest.raises(ValueError, match=r"split 'test'.*splits \['train'\]"):
        datasets.load_image_folder(tmp_path)


def test_class_folders_without_images_are_rejected(tmp_path):
    os.makedirs(tmp_path / "train" / "a")
    (tmp_path / "train" / "a" / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="Expected images"):
        datasets.load_image_folder(tmp_path, split="train")


def test_folder_without_classes_has_no_class_names(tmp_path):
    with pytest.raises(ValueError, match="no subfolders"):
        datasets.image_folder_class_names(tmp_path)


@pytest.mark.parametrize("image_size", [224, (0, 5), (5, 5, 3), (2.5, 3)])
def test_bad_image_size_is_rejected(tmp_path, image_size):
    x, y = few_digits(per_class=1, classes=2)
    datasets.write_image_folder(x, y, tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        datasets.load_image_folder(tmp_path, split="train", image_size=image_size)


def test_bad_channels_are_rejected(tmp_path):
    x, y = few_digits(per_class=1, classes=2)
    datasets.write_image_folder(x, y, tmp_path)
    with pytest.raises(ValueError, match="channels"):
        datasets.image_folder_dataset(tmp_path, channels=2)


def test_npz_loader_points_an_image_folder_to_load_image_folder(tmp_path):
    x, y = few_digits(per_class=1, classes=2)
    datasets.write_image_folder(x, y, tmp_path)
    with pytest.raises(ValueError, match="load_image_folder"):
        datasets.load("cifar10", path=tmp_path)


# ----------------------------------------------------------------------
# Bad input to write_image_folder.


def test_write_rejects_float_images():
    with pytest.raises(TypeError, match="uint8"):
        datasets.write_image_folder(np.zeros((1, 8, 8, 3), np.float32), [0], "unused")


def test_write_rejects_unsorted_class_names(tmp_path):
    with pytest.raises(ValueError, match="sorted order"):
        datasets.write_image_folder(
            np.zeros((2, 8, 8, 3), np.uint8), [0, 1], tmp_path, class_names=["dog", "cat"]
        )


def test_write_rejects_labels_beyond_the_class_names(tmp_path):
    with pytest.raises(ValueError, match="len\\(class_names\\)=2"):
        datasets.write_image_folder(
            np.zeros((2, 8, 8, 3), np.uint8), [0, 2], tmp_path, class_names=["a", "b"]
        )


def test_write_rejects_label_count_mismatch(tmp_path):
    with pytest.raises(ValueError, match="2 integer labels"):
        datasets.write_image_folder(np.zeros((2, 8, 8, 3), np.uint8), [0], tmp_path)


def test_write_refuses_a_split_folder_that_holds_files(tmp_path):
    x, y = few_digits(per_class=1, classes=2)
    datasets.write_image_folder(x, y, tmp_path)
    with pytest.raises(ValueError, match="new or empty"):
        datasets.write_image_folder(x, y, tmp_path)


def test_docstring_examples_hold():
    result = doctest.testmod(datasets, extraglobs={"np": np, "os": os})
    assert result.attempted > 0 and result.failed == 0
