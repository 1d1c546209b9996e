"""Bad input gets a clear error naming the argument, before any work."""

import numpy as np
import pytest
import tensorflow as tf

from keras_poison import ClassPatternNoise
from keras_poison import RandomFlip
from keras_poison import TargetedFlip
from keras_poison import relabel_seeds
from keras_poison._validation import validate_class

X = np.zeros((6, 2, 2, 3), "float32")
Y = np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(ValueError, match=r"`rate` in \[0, 1\]. Received: rate="):
        RandomFlip(rate, 3)
    with pytest.raises(ValueError, match="`rate`"):
        TargetedFlip({0: 1}, rate=rate)


def test_fraction_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="`fraction`"):
        ClassPatternNoise(3, epsilon=1, fraction=2)


def test_non_numeric_rate_is_a_type_error():
    with pytest.raises(TypeError, match="`rate`"):
        RandomFlip("0.2", 3)


@pytest.mark.parametrize("num_classes", [1, 0, -3])
def test_num_classes_below_two_is_rejected(num_classes):
    with pytest.raises(ValueError, match=f"`num_classes` >= 2. Received: num_classes={num_classes}"):
        RandomFlip(0.2, num_classes)
    with pytest.raises(ValueError, match="`num_classes`"):
        ClassPatternNoise(num_classes, epsilon=1)


def test_missing_num_classes_is_a_type_error():
    # Required in the signature: the API page shows no default it would reject.
    with pytest.raises(TypeError, match="num_classes"):
        RandomFlip(0.2)
    with pytest.raises(TypeError, match="`num_classes` to be an int >= 2"):
        RandomFlip(0.2, None)


@pytest.mark.parametrize("bad", [3, -1])
def test_label_outside_range_is_rejected(bad):
    y = Y.copy()
    y[2] = bad
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        RandomFlip(0.2, 3).poison(X, y)


def test_label_outside_range_in_a_stream_raises_when_iterated():
    y = Y.copy()
    y[4] = 7
    ds = tf.data.Dataset.from_tensor_slices((X, y))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels in \[0, 3\)"):
        list(RandomFlip(0.2, 3)(ds))


def test_one_hot_width_different_from_num_classes_is_rejected():
    y = np.eye(4, dtype="float32")[Y]
    with pytest.raises(ValueError, match="width num_classes=3. Received: labels of width 4"):
        RandomFlip(0.2, 3).poison(X, y)
    ds = tf.data.Dataset.from_tensor_slices((X, y)).batch(2)
    with pytest.raises(ValueError, match="width num_classes=3"):
        RandomFlip(0.2, 3)(ds)


@pytest.mark.parametrize("row", [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
def test_one_hot_rows_without_a_single_largest_entry_are_rejected(row):
    # Relabelling swaps the class's column with the new one: with a tie the
    # swap changed nothing while the mask said the label changed.
    y = np.eye(3, dtype="float32")[Y]
    y[2] = row
    with pytest.raises(ValueError, match="single largest entry"):
        RandomFlip(1.0, 3, seed=0).poison(X, y)
    ds = tf.data.Dataset.from_tensor_slices((X, y))
    with pytest.raises(tf.errors.InvalidArgumentError, match="single largest entry"):
        list(RandomFlip(1.0, 3, seed=0).transform(ds, with_mask=True))
    with pytest.raises(ValueError, match="single largest entry"):
        ClassPatternNoise(3, epsilon=0.1).poison(X, y)


def test_x_and_y_of_different_lengths_are_rejected():
    with pytest.raises(ValueError, match=r"len\(x\)=6, len\(y\)=5"):
        RandomFlip(0.2, 3).poison(X, Y[:5])


@pytest.mark.parametrize(
    "element",
    [
        lambda: tf.data.Dataset.from_tensor_slices(X),
        lambda: tf.data.Dataset.from_tensor_slices((X, Y, Y, Y)),
        lambda: tf.data.Dataset.from_tensor_slices({"image": X, "label": Y}),
    ],
    ids=["x_only", "quadruple", "dict"],
)
def test_dataset_whose_elements_are_not_pairs_is_rejected(element):
    with pytest.raises(TypeError, match=r"\(x, y\) pairs"):
        RandomFlip(0.2, 3)(element())


def test_non_dataset_is_rejected_by_transform():
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        RandomFlip(0.2, 3).transform((X, Y))


@pytest.mark.parametrize("mapping,match", [({1: 1}, "different class"), ({0: 5}, r"in \[0, 3\)"), ({-1: 0}, ">= 0|in")])
def test_bad_mapping_is_rejected(mapping, match):
    with pytest.raises(ValueError, match=match):
        TargetedFlip(mapping, rate=0.2, num_classes=3)


def test_empty_or_malformed_mapping_is_rejected():
    with pytest.raises(ValueError, match="at least one pair"):
        TargetedFlip({}, rate=0.2)
    with pytest.raises(TypeError, match="`mapping`"):
        TargetedFlip([1, 2, 3], rate=0.2)


@pytest.mark.parametrize("epsilon", [0, -1, float("nan")])
def test_non_positive_epsilon_is_rejected(epsilon):
    with pytest.raises(ValueError, match="`epsilon` > 0"):
        ClassPatternNoise(3, epsilon=epsilon)


def test_epsilon_below_one_grey_level_on_uint8_images_is_rejected():
    with pytest.raises(ValueError, match="epsilon"):
        ClassPatternNoise(3, epsilon=0.5).poison(X.astype("uint8"), Y)


def test_inverted_value_range_is_rejected():
    with pytest.raises(ValueError, match=r"low < high. Received: value_range=\(1, 0\)"):
        ClassPatternNoise(3, epsilon=0.1, value_range=(1, 0))


def test_images_outside_the_value_range_are_rejected():
    with pytest.raises(ValueError, match="value_range"):
        ClassPatternNoise(3, epsilon=0.1).poison(X + 3.0, Y)


@pytest.mark.parametrize("cm", [np.ones((3, 4)), np.ones(3), np.ones((1, 1)), -np.ones((3, 3))])
def test_bad_confusion_matrix_is_rejected(cm):
    with pytest.raises(ValueError, match="`confusion_matrix`"):
        TargetedFlip.from_confusion_matrix(cm)


@pytest.mark.parametrize("seed", [-1, 1.5, "a"])
def test_bad_seed_is_rejected(seed):
    with pytest.raises((ValueError, TypeError), match="`seed`"):
        RandomFlip(0.2, 3, seed=seed)


def test_num_examples_the_pipeline_contradicts_raises_at_build_time():
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(2)
    with pytest.raises(ValueError, match="num_examples=4 was passed"):
        RandomFlip(0.2, 3).transform(ds, num_examples=4)


def test_num_examples_smaller_than_a_generator_stream_raises_when_iterated():
    ds = tf.data.Dataset.from_generator(
        lambda: iter(zip(X, Y)),
        output_signature=(
            tf.TensorSpec(X.shape[1:], tf.as_dtype(X.dtype)),
            tf.TensorSpec((), tf.as_dtype(Y.dtype)),
        ),
    ).batch(2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_examples=4"):
        list(RandomFlip(0.2, 3).transform(ds, num_examples=4))


# ----------------------------------------------------------------------
# One class-index check for the whole library.


def test_validate_class_returns_a_python_int():
    value = validate_class("target", np.int64(2), 3)
    assert value == 2 and type(value) is int
    assert validate_class("target", 7, None) == 7


@pytest.mark.parametrize("value", [1.0, "1", True, None])
def test_validate_class_refuses_what_is_not_an_int(value):
    with pytest.raises(TypeError, match=r"Expected `target` to be an int class index in \[0, 3\)"):
        validate_class("target", value, 3)


@pytest.mark.parametrize("value", [-1, 3, 10])
def test_validate_class_names_the_argument_and_the_interval(value):
    with pytest.raises(ValueError, match=rf"Expected `target` in \[0, 3\). Received: target={value}$"):
        validate_class("target", value, 3)


def test_validate_class_without_num_classes_checks_only_non_negative():
    with pytest.raises(ValueError, match="Expected `target` >= 0. Received: target=-2"):
        validate_class("target", -2, None)


def test_to_class_target_outside_the_classes():
    with pytest.raises(ValueError, match=r"`target` in \[0, 3\)"):
        TargetedFlip.to_class(3, rate=0.2, num_classes=3)
    with pytest.raises(TypeError, match="`target`"):
        TargetedFlip.to_class(1.0, rate=0.2, num_classes=3)


# ----------------------------------------------------------------------
# Keyword-only arguments.


def test_seed_is_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        RandomFlip(0.2, 3, 0)
    with pytest.raises(TypeError, match="positional"):
        TargetedFlip({0: 1}, 0.2, 0)
    with pytest.raises(TypeError, match="positional"):
        TargetedFlip.from_confusion_matrix(np.ones((3, 3)), 0.2, 0)
    with pytest.raises(TypeError, match="positional"):
        TargetedFlip.to_class(0, 0.2, 3, 0)
    with pytest.raises(TypeError, match="positional"):
        TargetedFlip.from_class(1, 0, 0.2, 3, 0)


def test_relabel_seeds_rejects_bad_indices_and_labels():
    with pytest.raises(ValueError, match=r"`seed_indices` in \[0, 6\)"):
        relabel_seeds(X, Y, [0, 6], label=0)
    with pytest.raises(TypeError, match="`seed_indices`"):
        relabel_seeds(X, Y, [0.5], label=0)
    with pytest.raises(TypeError, match="`label`"):
        relabel_seeds(X, Y, [0], label=0.0)
    with pytest.raises(ValueError, match=r"len\(x\)=6, len\(y\)=5"):
        relabel_seeds(X, Y[:5], [0], label=0)
