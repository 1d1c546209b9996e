"""Spectral signatures, activation clustering and deep k-NN."""

import keras
import numpy as np
import pytest

from keras_poison import ActivationClusteringDetector
from keras_poison import KNNDetector
from keras_poison import RandomFlip
from keras_poison import SpectralSignatureDetector
from keras_poison import TargetedFlip
from keras_poison import datasets
from keras_poison.defences.detectors import feature_extractor


def clustered_features(num_classes=4, per_class=100, dims=16, seed=0):
    """Well-separated class clusters, as a trained model's features look."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 8, (num_classes, dims))
    labels = np.repeat(np.arange(num_classes), per_class)
    features = centres[labels] + rng.normal(0, 1, (len(labels), dims))
    return features.astype("float32"), labels


@pytest.fixture
def flipped():
    features, labels = clustered_features()
    _, noisy, mask = RandomFlip(0.1, num_classes=4, seed=0).poison(np.zeros((len(labels), 1)), labels)
    return features, labels, noisy, mask


def test_knn_finds_every_flipped_label_and_suggests_the_true_one(flipped):
    features, labels, noisy, mask = flipped
    report = KNNDetector(k=10).detect(None, noisy, features=features)
    metrics = report.evaluate(mask)
    assert metrics.precision == 1.0 and metrics.recall == 1.0
    np.testing.assert_array_equal(report.suggested_labels[mask], labels[mask])


def test_knn_rejects_k_not_below_the_number_of_examples():
    features, labels = clustered_features(per_class=5)
    with pytest.raises(ValueError, match=r"`k` < the number of examples \(20\).*k=20"):
        KNNDetector(k=20).detect(None, labels, features=features)


def test_knn_excludes_each_example_from_its_own_neighbours():
    # Two tight pairs: with itself counted, a lone label would win its vote.
    features = np.array([[0.0], [0.1], [5.0], [5.1]], "float32")
    report = KNNDetector(k=1).detect(None, np.array([0, 1, 1, 1]), features=features)
    assert report.flagged.tolist() == [True, True, False, False]


def test_spectral_signature_flags_flipped_labels_above_chance(flipped):
    features, _, noisy, mask = flipped
    report = SpectralSignatureDetector(expected_poison_rate=0.1).detect(None, noisy, features=features)
    metrics = report.evaluate(mask)
    assert metrics.auroc > 0.9
    assert metrics.recall > 0.8


def test_spectral_signature_flags_its_budget_per_class(flipped):
    features, _, noisy, _ = flipped
    report = SpectralSignatureDetector(expected_poison_rate=0.1, removal_factor=1.5).detect(
        None, noisy, features=features
    )
    for c in range(4):
        members = noisy == c
        assert report.flagged[members].sum() == round(1.5 * 0.1 * members.sum())


def test_activation_clustering_isolates_the_poison_cluster():
    # One source class relabelled into another: one foreign cluster (the
    # backdoor-like case the method was made for).
    features, labels = clustered_features()
    attack = TargetedFlip.from_class(1, 0, rate=0.05, num_classes=4, seed=0)
    _, noisy, mask = attack.poison(np.zeros((len(labels), 1)), labels)
    report = ActivationClusteringDetector(num_components=4).detect(None, noisy, features=features)
    metrics = report.evaluate(mask)
    assert metrics.f1 > 0.9
    assert report.details["classes"][0]["flagged"]
    assert not any(report.details["classes"][c]["flagged"] for c in (1, 2, 3))


def test_activation_clustering_flags_nothing_in_clean_gaussian_classes():
    features, labels = clustered_features()
    report = ActivationClusteringDetector(num_components=4, reduction="pca").detect(
        None, labels, features=features
    )
    assert report.flagged.sum() == 0


def test_detectors_read_the_penultimate_layer_of_a_functional_model():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="logits")(hidden)
    model = keras.Model(inputs, outputs)
    assert feature_extractor(model).output.shape == (None, 5)
    x = np.random.default_rng(0).normal(size=(30, 6)).astype("float32")
    report = KNNDetector(model, k=3).detect(x, np.arange(30) % 3)
    assert report.num_examples == 30


@pytest.mark.parametrize("wrap", ["functional", "sequential"])
def test_detectors_read_the_inner_penultimate_layer_of_a_wrapped_base_model(wrap):
    # The README's pattern: defence layers in front of a user's base model.
    import keras_poison

    base = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(5, name="hidden"),
                             keras.layers.Dense(3, activation="softmax")])
    centering = keras_poison.ColourCentering()
    if wrap == "functional":
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, base(centering(inputs)))
    else:
        model = keras.Sequential([keras.Input((8, 8, 3)), centering, base])
    x = np.random.default_rng(0).uniform(size=(30, 8, 8, 3)).astype("float32")
    features = feature_extractor(model).predict(x, verbose=0)
    # The front layer runs first: the inner features of the centred images.
    expected = feature_extractor(base).predict(keras.ops.convert_to_numpy(centering(x)), verbose=0)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    assert KNNDetector(model, k=3).detect(x, np.arange(30) % 3).num_examples == 30


def test_detectors_read_a_named_layer_of_a_sequential_model():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(7, name="wide"), keras.layers.Dense(3, name="narrow"),
         keras.layers.Dense(2)]
    )
    assert feature_extractor(model, "wide").output.shape == (None, 7)
    assert feature_extractor(model).output.shape == (None, 3)


def test_model_without_penultimate_layer_is_rejected():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no penultimate layer"):
        SpectralSignatureDetector(model).detect(np.zeros((4, 4)), np.array([0, 1, 0, 1]))


def test_subclassed_model_without_inputs_is_rejected_with_a_hint():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="features="):
        feature_extractor(Tiny())


def test_unknown_layer_name_lists_the_layers():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"one of \['a'"):
        feature_extractor(model, "missing")


def test_features_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match=r"features.*\(10, d\)"):
        KNNDetector(k=3).detect(None, np.zeros(10, int), features=np.zeros((9, 4)))


def test_detector_without_model_or_features_is_rejected():
    with pytest.raises(ValueError, match="features="):
        KNNDetector().detect(np.zeros((10, 4)), np.zeros(10, int))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SpectralSignatureDetector(expected_poison_rate=0.0), "expected_poison_rate"),
        (lambda: SpectralSignatureDetector(expected_poison_rate=1.0), "expected_poison_rate"),
        (lambda: SpectralSignatureDetector(removal_factor=-1), "removal_factor"),
        (lambda: ActivationClusteringDetector(size_threshold=0.7), "size_threshold"),
        (lambda: ActivationClusteringDetector(reduction="tsne"), "reduction"),
        (lambda: ActivationClusteringDetector(num_components=0), "num_components"),
        (lambda: KNNDetector(k=0), "`k`"),
    ],
)
def test_bad_settings_are_rejected(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_knn_on_a_model_trained_on_flipped_real_digits_finds_the_flips():
    (x, y), _ = datasets.load("digits")
    x = x.astype("float32") / 255.0
    _, noisy, mask = RandomFlip(0.2, num_classes=10, seed=0).poison(x, y)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, noisy, epochs=10, batch_size=64, verbose=0)
    report = KNNDetector(model, k=10).detect(x, noisy)
    metrics = report.evaluate(mask)
    assert metrics.f1 > 0.85
    # The neighbours' plurality is the true label for most flipped examples.
    assert np.mean(report.suggested_labels[mask] == y[mask]) > 0.85
