"""AUMDetector and MarginRecorder: flipped labels from one run's training dynamics."""

import keras
import numpy as np
import pytest

from keras_poison import AUMDetector
from keras_poison import MarginRecorder
from keras_poison.defences.detectors.margins import margins_of


def test_margin_is_assigned_score_minus_the_largest_other():
    logits = np.array([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]])
    np.testing.assert_allclose(margins_of(logits, np.array([0, 2]), from_logits=True), [1.0, -2.0])


def test_probability_margins_equal_logit_margins():
    logits = np.random.default_rng(0).normal(size=(50, 6)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.arange(50) % 6
    np.testing.assert_allclose(
        margins_of(probs, labels), margins_of(logits, labels, from_logits=True), atol=1e-9
    )


def test_a_probability_of_zero_gives_a_finite_margin():
    margins = margins_of(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([0, 0]))
    assert np.all(np.isfinite(margins))
    assert margins[0] < 0 < margins[1]


def test_one_training_run_finds_random_flips_on_real_digits(flipped_digits, tiny_digits_model):
    x, y, noisy, mask = flipped_digits
    report = AUMDetector(tiny_digits_model, epochs=15, seed=0).detect(x, noisy)
    metrics = report.evaluate(mask)
    assert metrics.f1 > 0.8
    assert metrics.auroc > 0.95
    # The classes the model favoured are mostly the true ones.
    flagged = report.flagged & mask
    assert np.mean(report.suggested_labels[flagged] == y[flagged]) > 0.8


def test_recorder_in_a_users_fit_matches_the_detector(flipped_digits, tiny_digits_model):
    x, _, noisy, mask = flipped_digits
    recorder = MarginRecorder(x, noisy, start_epoch=2)
    keras.utils.set_random_seed(0)
    model = tiny_digits_model()
    model.fit(x, noisy, epochs=6, batch_size=64, verbose=0, callbacks=[recorder])
    assert len(recorder.margins) == 4  # epochs 2..5
    assert recorder.seconds > 0
    mine = recorder.detector_report()
    theirs = AUMDetector(tiny_digits_model, epochs=6, start_epoch=2, seed=0).detect(x, noisy)
    np.testing.assert_allclose(mine.scores, theirs.scores, atol=1e-4)
    np.testing.assert_array_equal(mine.flagged, theirs.flagged)


def test_one_hot_labels_give_the_same_report_as_sparse():
    aum = np.array([2.0, 1.5, -1.0, 2.5, 1.8, -0.5, 2.2, 1.9, -2.0, 2.1])
    labels = np.arange(10) % 3
    sparse = AUMDetector().detect(None, labels, aum=aum)
    one_hot = AUMDetector().detect(None, np.eye(3)[labels], aum=aum)
    np.testing.assert_array_equal(sparse.flagged, one_hot.flagged)
    np.testing.assert_array_equal(sparse.scores, -aum)


def test_mixture_splits_two_clusters_and_spares_the_upper_tail():
    rng = np.random.default_rng(0)
    aum = np.concatenate([rng.normal(3, 1.5, 800), rng.normal(-2, 0.3, 200)])
    report = AUMDetector().detect(None, np.zeros(1000, int), aum=aum)
    truth = np.arange(1000) >= 800
    metrics = report.evaluate(truth)
    assert metrics.precision > 0.95 and metrics.recall > 0.95
    assert not report.flagged[np.argmax(aum)]
    assert report.details["gmm_cut"] < 0


def test_mixture_flags_no_positive_aum_on_clean_like_data():
    # Clean data: easy and hard examples, all learnt; the mixture still
    # splits them, but no example the model ranked first on average is flagged.
    rng = np.random.default_rng(1)
    aum = np.concatenate([rng.normal(4, 1, 700), rng.normal(1, 0.8, 300)])
    report = AUMDetector().detect(None, np.zeros(1000, int), aum=aum)
    assert report.flagged.sum() > 0  # the few hard examples below 0
    assert not report.flagged[aum >= 0].any()
    # The reported cut is the one applied: every example at or below it is flagged.
    cut = report.details["gmm_cut"]
    assert cut < 0
    np.testing.assert_array_equal(report.flagged, aum <= cut)


def test_fixed_threshold_flags_below_it():
    aum = np.array([0.5, -0.1, 0.0, -3.0])
    report = AUMDetector(threshold=0.0).detect(None, np.zeros(4, int), aum=aum)
    assert report.flagged.tolist() == [False, True, False, True]


def test_constant_aum_flags_nothing():
    report = AUMDetector().detect(None, np.zeros(5, int), aum=np.ones(5))
    assert not report.flagged.any()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"threshold": "otsu"}, ValueError, "threshold"),
        ({"threshold": float("nan")}, ValueError, "threshold"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": 5, "start_epoch": 5}, ValueError, "start_epoch"),
        ({"build_model": "vgg"}, TypeError, "build_model"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        AUMDetector(**kwargs)


def test_bad_aum_is_rejected():
    with pytest.raises(ValueError, match=r"aum.*\(4,\)"):
        AUMDetector().detect(None, np.zeros(4, int), aum=np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        AUMDetector().detect(None, np.zeros(2, int), aum=np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="build_model"):
        AUMDetector().detect(np.zeros((2, 1)), np.zeros(2, int))


def test_recorder_rejects_mismatched_data_and_reports_no_epochs():
    with pytest.raises(ValueError, match="one label per image"):
        MarginRecorder(np.zeros((3, 2)), np.zeros(4, int))
    recorder = MarginRecorder(np.zeros((3, 2)), np.zeros(3, int), start_epoch=5)
    with pytest.raises(ValueError, match="recorded epoch"):
        recorder.area_under_margin


def test_recorder_rejects_a_model_with_too_few_outputs():
    x = np.zeros((4, 3), "float32")
    labels = np.array([0, 1, 2, 2])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="score per class"):
        model.fit(x, labels % 2, epochs=1, verbose=0, callbacks=[MarginRecorder(x, labels)])


def test_recorder_config_names_its_settings():
    recorder = MarginRecorder(np.zeros((2, 1)), np.zeros(2, int), from_logits=True, start_epoch=3)
    assert recorder.get_config() == {"from_logits": True, "start_epoch": 3, "batch_size": 256}


def test_mixture_flags_every_aum_below_the_cut_even_in_the_far_lower_tail():
    # A narrow low cluster and a wide clean one: the wide Gaussian is the more
    # likely one again far below the narrow cluster, yet those examples are the
    # most suspicious of all.
    rng = np.random.default_rng(2)
    aum = np.concatenate([rng.normal(3, 1.5, 800), rng.normal(-2, 0.2, 200), [-9.0, -9.1]])
    report = AUMDetector().detect(None, np.zeros(len(aum), int), aum=aum)
    assert report.flagged[-2:].all()
    np.testing.assert_array_equal(report.flagged, aum <= report.details["gmm_cut"])


def test_logits_read_as_probabilities_are_refused():
    # Every negative logit would be floored to log(tiny): margins near -86.
    logits = np.array([[1.2, -0.4], [-0.3, 0.5]])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*from_logits=True"):
        margins_of(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"sum to 1 \(softmax outputs, not logits\)"):
        margins_of(np.array([[0.2, 0.3], [0.5, 0.5]]), np.array([0, 1]))


def test_recorder_on_a_logit_model_without_from_logits_raises():
    x = np.random.default_rng(0).uniform(size=(12, 4)).astype("float32")
    y = np.arange(12) % 2
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="from_logits=True"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[MarginRecorder(x, y)])
    recorder = MarginRecorder(x, y, from_logits=True)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[recorder])
    assert len(recorder.margins) == 1
