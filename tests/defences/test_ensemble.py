"""PartitionEnsemble (Deep Partition Aggregation), BaggingEnsemble and certificates."""

import itertools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_poison
from keras_poison import BaggingEnsemble
from keras_poison import PartitionEnsemble
from keras_poison import certified_accuracy
from keras_poison import datasets
from keras_poison.defences import certify_votes
from keras_poison.defences import member_error
from keras_poison.defences import vote_accuracy

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def digits():
    (x, y), (x_test, y_test) = datasets.load("digits")
    return x, y, x_test, y_test


def build_dense(index=0, num_classes=NUM_CLASSES, input_shape=(8, 8, 1), compiled=True):
    """A seeded one-layer softmax model: the same index builds the same model."""
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(
                num_classes,
                activation="softmax",
                kernel_initializer=keras.initializers.GlorotUniform(seed=index),
            ),
        ]
    )
    if compiled:
        model.compile(
            keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    return model


def constant_member(choice, num_classes=3):
    """A compiled model that always votes `choice`."""
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                num_classes,
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(np.eye(num_classes)[choice]),
            ),
        ]
    )
    model.compile("sgd", "mse")
    return model


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    ensemble = PartitionEnsemble(build_dense, k=5, num_classes=NUM_CLASSES)
    ensemble.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return ensemble


def member_sizes(output):
    return [int(n) for n in re.findall(r"Member \d+/\d+: (\d+) examples", output)]


# ----------------------------------------------------------------------
# Partitions.


def test_partition_of_an_image_is_independent_of_order_and_of_other_examples(digits):
    x = digits[0][:400]
    ensemble = PartitionEnsemble(build_dense, k=7, num_classes=NUM_CLASSES)
    parts = ensemble.partition_of(x)
    permutation = np.random.default_rng(0).permutation(len(x))
    np.testing.assert_array_equal(ensemble.partition_of(x[permutation]), parts[permutation])
    inserted = np.random.default_rng(1).integers(0, 256, (50, 8, 8, 1), dtype=x.dtype)
    mixed = np.concatenate([inserted[:20], x, inserted[20:]])
    np.testing.assert_array_equal(ensemble.partition_of(mixed)[20:420], parts)


def test_every_example_lands_in_exactly_one_partition_and_all_are_used(digits, capsys):
    x, y = digits[0][:300], digits[1][:300]
    ensemble = PartitionEnsemble(build_dense, k=4, num_classes=NUM_CLASSES)
    parts = ensemble.partition_of(x)
    assert parts.shape == (300,) and parts.min() >= 0 and parts.max() < 4
    ensemble.fit(x, y, epochs=1, verbose=1)
    sizes = member_sizes(capsys.readouterr().out)
    assert sizes == np.bincount(parts, minlength=4).tolist()
    assert sum(sizes) == len(x)


def test_a_poison_changes_one_member_and_reordering_changes_none(digits):
    # The certificate's premise: a member's training is a function of its
    # own part. With seeded members, an inserted example or a flipped
    # label changes one member's weights; a shuffled training set none.
    x, y = digits[0][:240], digits[1][:240]

    def train(x_train, y_train):
        ensemble = PartitionEnsemble(build_dense, k=3, num_classes=NUM_CLASSES, seed=1)
        ensemble.fit(x_train, y_train, epochs=2, batch_size=16, verbose=0)
        return [[w.copy() for w in m.get_weights()] for m in ensemble.members], ensemble

    def changed(a, b):
        return [i for i in range(3) if not all(np.array_equal(u, v) for u, v in zip(a[i], b[i]))]

    clean, ensemble = train(x, y)
    order = np.random.default_rng(0).permutation(len(x))
    assert changed(clean, train(x[order], y[order])[0]) == []
    flipped = y.copy()
    flipped[5] = (flipped[5] + 1) % NUM_CLASSES
    part = int(ensemble.partition_of(x[5:6])[0])
    assert changed(clean, train(x, flipped)[0]) == [part]
    poison = np.full((1, 8, 8, 1), 255, x.dtype)
    inserted = train(np.concatenate([x[:100], poison, x[100:]]), np.insert(y, 100, 0))[0]
    assert changed(clean, inserted) == [int(ensemble.partition_of(poison)[0])]


def test_stream_is_partitioned_like_arrays(digits, capsys):
    x, y = digits[0][:300], digits[1][:300]
    ensemble = PartitionEnsemble(build_dense, k=4, num_classes=NUM_CLASSES)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(300, seed=0)
    ensemble.fit(stream, epochs=1, batch_size=32, verbose=1)
    sizes = member_sizes(capsys.readouterr().out)
    assert sizes == np.bincount(ensemble.partition_of(x), minlength=4).tolist()
    assert ensemble.trained


# ----------------------------------------------------------------------
# Votes and certificates.


def plurality(counts):
    best = max(counts)
    return min(c for c, n in enumerate(counts) if n == best)


def brute_force_radius(counts):
    """Fewest member votes to change to move the plurality, minus one."""
    k, num_classes = sum(counts), len(counts)
    top = plurality(counts)
    fewest = k + 1
    for other in itertools.product(range(k + 1), repeat=num_classes):
        if sum(other) == k and plurality(other) != top:
            moved = sum(max(0, a - b) for a, b in zip(counts, other))
            fewest = min(fewest, moved)
    return fewest - 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=4).filter(lambda c: 0 < sum(c) <= 7))
def test_certificate_matches_brute_force_on_small_vote_counts(counts):
    predictions, radius = certify_votes(np.array([counts]))
    assert predictions[0] == plurality(counts)
    assert radius[0] == brute_force_radius(counts)


def test_vote_is_the_plurality_with_ties_to_the_smaller_class():
    # Votes 2, 0, 2, 0: classes 0 and 2 tie; class 0 wins.
    ensemble = PartitionEnsemble(
        members=[constant_member(c) for c in (2, 0, 2, 0)], k=4, num_classes=3
    )
    x = np.zeros((5, 2), "float32")
    np.testing.assert_array_equal(ensemble.vote_counts(x), [[2, 0, 2]] * 5)
    np.testing.assert_array_equal(np.argmax(ensemble.predict(x, verbose=0), axis=1), 0)
    loss, accuracy = ensemble.evaluate(x, np.zeros(5, int), verbose=0)
    assert accuracy == 1.0 and loss == pytest.approx(0.5)  # half the members erred
    votes = PartitionEnsemble(
        members=[constant_member(c) for c in (1, 2, 2)], k=3, num_classes=3
    ).vote_counts(x[:1])
    assert certify_votes(votes)[0].tolist() == [2]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
            st.lists(st.integers(0, 6), min_size=n, max_size=n),
        )
    )
)
def test_certified_accuracy_starts_at_accuracy_and_never_rises(data):
    y_true, predictions, radius = (np.array(v) for v in data)
    curve = certified_accuracy(y_true, predictions, radius)
    assert curve[0] == pytest.approx(np.mean(y_true == predictions))
    assert np.all(np.diff(curve) <= 0)
    assert curve[-1] == 0.0 and len(curve) == radius.max() + 2


# ----------------------------------------------------------------------
# On real data.


def test_partition_ensemble_is_accurate_on_digits_and_certifies(trained, digits):
    _, _, x_test, y_test = digits
    _, accuracy = trained.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.85
    predictions, radius = trained.certify(x_test)
    assert np.mean(predictions == y_test) == pytest.approx(accuracy)
    assert radius.min() >= 0 and radius.max() <= 2  # k = 5: at most floor(5 / 2)
    curve = trained.certified_accuracy(x_test, y_test)
    assert curve[0] == pytest.approx(accuracy) and curve[1] > 0.6


def test_evaluate_reads_sparse_and_one_hot_labels_alike(trained, digits):
    # Keras' "accuracy" settles on one label format at its first batch; the
    # ensembles' metric and loss read the format at every call.
    # (A third label rank in one session would hit Keras' own loss wrapper,
    # which cannot take labels of unknown rank, as for any Keras model.)
    _, _, x_test, y_test = digits
    one_hot = trained.evaluate(x_test, np.eye(NUM_CLASSES)[y_test], verbose=0)
    sparse = trained.evaluate(x_test, y_test, verbose=0)
    np.testing.assert_allclose(one_hot, sparse)
    assert sparse[1] == pytest.approx(np.mean(trained.certify(x_test)[0] == y_test))


def test_member_error_and_vote_accuracy_take_labels_of_any_format():
    shares = np.array([[0.5, 0.25, 0.25], [0.0, 0.25, 0.75]], "float32")
    unknown_rank = tf.TensorSpec(None, tf.float32)

    @tf.function(input_signature=[unknown_rank, tf.TensorSpec((None, 3), tf.float32)])
    def both(y_true, y_pred):
        return member_error(y_true, y_pred), vote_accuracy(y_true, y_pred)

    for labels in ([0, 1], [[0], [1]], [[1, 0, 0], [0, 1, 0]]):
        for function in (lambda a, b: (member_error(a, b), vote_accuracy(a, b)), both):
            error, hit = (np.asarray(v) for v in function(np.array(labels, "float32"), shares))
            np.testing.assert_allclose(error, [0.5, 0.75])
            np.testing.assert_array_equal(hit, [1.0, 0.0])


def test_partition_ensemble_saves_and_loads_with_identical_predictions(trained, digits, tmp_path):
    x_test, y_test = digits[2], digits[3]
    path = str(tmp_path / "ensemble.keras")
    trained.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is PartitionEnsemble and loaded.k == 5 and loaded.trained
    np.testing.assert_array_equal(
        loaded.predict(x_test, verbose=0), trained.predict(x_test, verbose=0)
    )
    for got, expected in zip(loaded.certify(x_test), trained.certify(x_test)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(loaded.partition_of(x_test), trained.partition_of(x_test))
    np.testing.assert_allclose(
        loaded.evaluate(x_test, y_test, verbose=0), trained.evaluate(x_test, y_test, verbose=0)
    )


def test_bagging_ensemble_is_accurate_and_round_trips(digits, tmp_path):
    x, y, x_test, y_test = digits
    ensemble = BaggingEnsemble(build_dense, k=3, num_classes=NUM_CLASSES, sample_size=0.8)
    ensemble.fit(x, y, epochs=4, verbose=0)
    _, accuracy = ensemble.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.85
    path = str(tmp_path / "bagging.keras")
    ensemble.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is BaggingEnsemble and loaded.sample_size == 0.8
    np.testing.assert_array_equal(
        loaded.predict(x_test, verbose=0), ensemble.predict(x_test, verbose=0)
    )


def test_bootstrap_samples_depend_on_content_not_order(digits):
    x, y = digits[0][:200], digits[1][:200]
    ensemble = BaggingEnsemble(build_dense, k=2, num_classes=NUM_CLASSES, sample_size=150)
    drawn = ensemble.bootstrap_indices(x, y, 1)
    assert drawn.shape == (150,) and len(np.unique(drawn)) < 150  # with replacement
    order = np.random.default_rng(0).permutation(len(x))
    redrawn = order[ensemble.bootstrap_indices(x[order], y[order], 1)]
    np.testing.assert_array_equal(np.sort(redrawn), np.sort(drawn))
    assert not np.array_equal(np.sort(ensemble.bootstrap_indices(x, y, 0)), np.sort(drawn))


def test_members_train_under_the_active_distribution_strategy(digits, two_cpu_strategy):
    x, y, x_test, y_test = digits
    strategy = two_cpu_strategy
    with strategy.scope():
        ensemble = PartitionEnsemble(build_dense, k=2, num_classes=NUM_CLASSES)
    assert all(m.distribute_strategy is strategy for m in ensemble.members)
    ensemble.fit(x, y, epochs=5, batch_size=64, verbose=0)
    assert ensemble.evaluate(x_test, y_test, verbose=0)[1] > 0.8


def test_builder_gets_the_member_index_and_callbacks_may_be_per_member(digits):
    x, y = digits[0][:100], digits[1][:100]
    seen = []
    ensemble = PartitionEnsemble(
        lambda index: seen.append(index) or build_dense(index), k=3, num_classes=NUM_CLASSES
    )
    assert seen == [0, 1, 2]
    histories = [keras.callbacks.History() for _ in range(3)]
    ensemble.fit(x, y, epochs=2, verbose=0, callbacks=lambda index: [histories[index]])
    assert [len(h.epoch) for h in histories] == [2, 2, 2]


def test_an_empty_part_warns_and_its_member_keeps_its_weights():
    x = np.full((6, 8, 8, 1), 128, "uint8")  # one image six times: one part
    ensemble = PartitionEnsemble(build_dense, k=3, num_classes=NUM_CLASSES)
    before = [m.get_weights()[0].copy() for m in ensemble.members]
    with pytest.warns(UserWarning, match="got no training examples"):
        ensemble.fit(x, np.zeros(6, int), verbose=0)
    full = int(ensemble.partition_of(x[:1])[0])
    for index, member in enumerate(ensemble.members):
        unchanged = np.array_equal(member.get_weights()[0], before[index])
        assert unchanged == (index != full)


# ----------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("k, error", [(1, ValueError), (0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_k_below_two_or_not_an_int_is_refused(k, error):
    with pytest.raises(error, match="`k`"):
        PartitionEnsemble(build_dense, k=k, num_classes=NUM_CLASSES)


def test_k_above_the_number_of_examples_is_refused_before_training(digits):
    x, y = digits[0][:4], digits[1][:4]
    ensemble = PartitionEnsemble(build_dense, k=5, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match=r"Expected `k` <= the number of training examples \(4\)"):
        ensemble.fit(x, y, verbose=0)
    stream = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match=r"\(4\).*Received: k=5"):
        ensemble.fit(stream, verbose=0)
    assert not ensemble.trained


def test_a_builder_returning_no_model_is_refused():
    with pytest.raises(TypeError, match="compiled keras.Model.*Received: None.*member 0"):
        PartitionEnsemble(lambda: None, k=3, num_classes=NUM_CLASSES)
    with pytest.raises(TypeError, match="build_model"):
        PartitionEnsemble("lenet5", k=3, num_classes=NUM_CLASSES)


def test_a_builder_returning_the_wrong_output_width_is_refused():
    with pytest.raises(ValueError, match=r"output shape \(batch, 10\).*Received: output shape \(None, 3\)"):
        PartitionEnsemble(lambda: build_dense(num_classes=3), k=3, num_classes=NUM_CLASSES)


def test_an_uncompiled_or_shapeless_member_is_refused():
    with pytest.raises(ValueError, match="compiled models"):
        PartitionEnsemble(lambda: build_dense(compiled=False), k=2, num_classes=NUM_CLASSES)
    shapeless = keras.Sequential([keras.layers.Dense(NUM_CLASSES)])
    shapeless.compile("sgd", "mse")
    with pytest.raises(TypeError, match="known input shape"):
        PartitionEnsemble(lambda: shapeless, k=2, num_classes=NUM_CLASSES)
    with pytest.raises(TypeError, match="one \\(the member index\\)"):
        PartitionEnsemble(lambda a, b: build_dense(), k=2, num_classes=NUM_CLASSES)


def test_certify_on_an_untrained_ensemble_is_refused():
    ensemble = PartitionEnsemble(build_dense, k=2, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="call `fit\\(x, y\\)` first"):
        ensemble.certify(np.zeros((2, 8, 8, 1), "uint8"))


def test_bad_training_data_is_refused_before_any_member_trains(digits):
    x, y = digits[0][:50], digits[1][:50]
    ensemble = PartitionEnsemble(build_dense, k=2, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match=r"Expected `x` of shape \(n, 8, 8, 1\)"):
        ensemble.fit(x[:, :4], y, verbose=0)
    with pytest.raises(ValueError, match=r"labels in \[0, 10\)"):
        ensemble.fit(x, y + 10, verbose=0)
    with pytest.raises(ValueError, match="same number of examples"):
        ensemble.fit(x, y[:10], verbose=0)
    with pytest.raises(ValueError, match="unbatched"):
        ensemble.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), verbose=0)
    with pytest.raises(ValueError, match=r"Expected `epochs` >= 1. Received: epochs=0"):
        ensemble.fit(x, y, epochs=0, verbose=0)  # would mark untrained members as trained
    with pytest.raises(TypeError, match="no optimizer of its own"):
        ensemble.compile(optimizer="adam")
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        BaggingEnsemble(build_dense, k=2, num_classes=NUM_CLASSES).fit(
            tf.data.Dataset.from_tensor_slices((x, y)), verbose=0
        )
    assert not ensemble.trained


def test_bad_certificate_inputs_are_refused():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        certify_votes([1, 2, 3])
    with pytest.raises(ValueError, match="counts` >= 0"):
        certify_votes([[1, -1]])
    with pytest.raises(ValueError, match="same length"):
        certified_accuracy([0, 1], [0, 1], [1])
    with pytest.raises(ValueError, match="sample_size"):
        BaggingEnsemble(build_dense, k=2, num_classes=NUM_CLASSES, sample_size=1.5)


def test_public_names_are_flat():
    assert keras_poison.PartitionEnsemble is PartitionEnsemble
    assert keras_poison.certified_accuracy is certified_accuracy


def test_a_stream_with_random_images_before_fit_is_refused_before_training():
    # A random map before the hash would put examples in other parts on
    # each member's pass, and void the certificate (hostile-user pass).
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype("float32")
    y = np.arange(40) % NUM_CLASSES
    generator = tf.random.Generator.from_seed(1)  # its state moves on every pass
    noisy = tf.data.Dataset.from_tensor_slices((x, y)).map(
        lambda image, label: (image + generator.uniform(tf.shape(image)) * 0.01, label))
    ensemble = PartitionEnsemble(build_dense, k=3, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="other images on a second pass"):
        ensemble.fit(noisy, epochs=1, batch_size=8, verbose=0)
    assert not ensemble.trained


def _tiny_builder():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_a_diverged_member_is_an_error_not_a_vote_for_class_zero():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    y = np.arange(30) % 3
    ensemble = PartitionEnsemble(_tiny_builder, k=3, num_classes=3)
    ensemble.fit(x, y, epochs=1, verbose=0)
    member = ensemble.members[1]
    member.set_weights([np.full_like(w, np.nan) for w in member.get_weights()])
    with pytest.raises(tf.errors.InvalidArgumentError, match="member 1 gave non-finite outputs"):
        ensemble.certify(x)
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
        ensemble.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("rebuild", ["from_config", "clone_model"])
def test_a_rebuild_without_weights_is_untrained_and_cannot_certify(rebuild):
    x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    y = np.arange(30) % 3
    ensemble = PartitionEnsemble(_tiny_builder, k=3, num_classes=3)
    ensemble.fit(x, y, epochs=1, verbose=0)
    if rebuild == "from_config":
        copy = PartitionEnsemble.from_config(ensemble.get_config())
    else:
        copy = keras.models.clone_model(ensemble)
    assert ensemble.trained and not copy.trained  # fresh members: nothing to certify
    with pytest.raises(ValueError, match="untrained ensemble"):
        copy.certify(x)
    copy.set_weights(ensemble.get_weights())  # the weights carry the flag
    assert copy.trained
    np.testing.assert_array_equal(copy.certify(x)[1], ensemble.certify(x)[1])
