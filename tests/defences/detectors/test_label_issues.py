"""LabelIssueDetector: confident learning through cleanlab, K-fold probabilities."""

import keras
import numpy as np
import pytest

from keras_poison import LabelIssueDetector
from keras_poison import RandomFlip
from keras_poison import datasets


def sharp_probabilities(true_labels, num_classes, confidence=0.9):
    """What a good classifier predicts: most mass on the true class."""
    rest = (1 - confidence) / (num_classes - 1)
    probs = np.full((len(true_labels), num_classes), rest)
    probs[np.arange(len(true_labels)), true_labels] = confidence
    return probs


def test_given_probabilities_find_exactly_the_flipped_labels():
    true_labels = np.arange(500) % 5
    _, noisy, mask = RandomFlip(0.1, num_classes=5, seed=1).poison(np.zeros((500, 1)), true_labels)
    report = LabelIssueDetector().detect(None, noisy, pred_probs=sharp_probabilities(true_labels, 5))
    metrics = report.evaluate(mask)
    assert (metrics.precision, metrics.recall) == (1.0, 1.0)
    np.testing.assert_array_equal(report.suggested_labels, true_labels)
    assert metrics.auroc == 1.0


def test_one_hot_labels_give_the_same_report_as_sparse():
    true_labels = np.arange(200) % 4
    _, noisy, _ = RandomFlip(0.1, num_classes=4, seed=0).poison(np.zeros((200, 1)), true_labels)
    probs = sharp_probabilities(true_labels, 4)
    sparse = LabelIssueDetector().detect(None, noisy, pred_probs=probs)
    one_hot = LabelIssueDetector().detect(None, np.eye(4)[noisy], pred_probs=probs)
    np.testing.assert_array_equal(sparse.flagged, one_hot.flagged)


def test_kfold_training_finds_random_flips_on_real_digits(flipped_digits, tiny_digits_model):
    x, _, noisy, mask = flipped_digits
    detector = LabelIssueDetector(tiny_digits_model, num_folds=3, epochs=30, batch_size=64)
    report = detector.detect(x, noisy)
    metrics = report.evaluate(mask)
    assert metrics.f1 > 0.8
    assert metrics.auroc > 0.95


def test_kfold_probabilities_are_out_of_sample_and_normalized(flipped_digits, tiny_digits_model):
    x, _, noisy, _ = flipped_digits
    detector = LabelIssueDetector(tiny_digits_model, num_folds=2, epochs=1)
    probs = detector.out_of_sample_probabilities(x[:200], noisy[:200])
    assert probs.shape == (200, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_kfold_is_deterministic_for_a_seed(flipped_digits, tiny_digits_model):
    x, _, noisy, _ = flipped_digits
    detector = LabelIssueDetector(tiny_digits_model, num_folds=2, epochs=2, seed=3)
    first = detector.out_of_sample_probabilities(x[:300], noisy[:300])
    second = detector.out_of_sample_probabilities(x[:300], noisy[:300])
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_fewer_than_two_folds_are_rejected():
    with pytest.raises(ValueError, match=r"`num_folds` >= 2.*num_folds=1"):
        LabelIssueDetector(num_folds=1)


def test_detect_without_model_or_probabilities_is_rejected():
    with pytest.raises(ValueError, match="build_model"):
        LabelIssueDetector().detect(np.zeros((10, 2)), np.zeros(10, int))


def test_probabilities_that_do_not_sum_to_one_are_rejected():
    scores = np.random.default_rng(0).uniform(0.1, 0.9, size=(10, 3))
    with pytest.raises(ValueError, match=r"sum to 1 \(softmax outputs, not logits\)"):
        LabelIssueDetector().detect(None, np.arange(10) % 3, pred_probs=scores)


def test_probabilities_outside_zero_one_are_rejected():
    with pytest.raises(ValueError, match=r"in \[0, 1\].*-0.5"):
        LabelIssueDetector().detect(None, np.arange(4) % 2, pred_probs=np.array([[1.5, -0.5]] * 4))


def test_probabilities_of_the_wrong_width_are_rejected():
    with pytest.raises(ValueError, match=r"column for every class.*labels go up to 3.*2 columns"):
        LabelIssueDetector().detect(None, np.arange(10) % 4, pred_probs=np.full((10, 2), 0.5))


def test_probabilities_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match=r"\(10, num_classes\)"):
        LabelIssueDetector().detect(None, np.arange(10) % 2, pred_probs=np.full((9, 2), 0.5))


def test_model_outputs_that_are_not_probabilities_are_rejected():
    def logits_model():
        model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    (x, y), _ = datasets.load("digits")
    with pytest.raises(ValueError, match="K-fold models' outputs"):
        LabelIssueDetector(logits_model, num_folds=2, epochs=1).detect(x[:100] / 16.0, y[:100])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(build_model="vgg"), "build_model"),
        (dict(epochs=0), "epochs"),
        (dict(filter_by="magic"), "filter_by"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        LabelIssueDetector(**kwargs)
