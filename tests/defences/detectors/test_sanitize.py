"""Sanitize: exactly the flagged examples are dropped or relabelled."""

import numpy as np
import pytest
import tensorflow as tf

from keras_poison import DetectionReport
from keras_poison import RandomFlip
from keras_poison import Sanitize

N = 40


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(N, 4, 4, 3)).astype("float32")
    y = np.arange(N) % 5
    return x, y


@pytest.fixture
def report():
    flagged = np.zeros(N, bool)
    flagged[[1, 7, 8, 30]] = True
    suggested = (np.arange(N) + 1) % 5
    return DetectionReport(flagged.astype(float), flagged, suggested_labels=suggested)



def test_drop_removes_exactly_the_flagged_examples_and_keeps_the_rest_bit_identical(data, report):
    x, y = data
    x_s, y_s = Sanitize(report).apply(x, y)
    keep = ~report.flagged
    assert len(x_s) == N - 4
    np.testing.assert_array_equal(x_s, x[keep])
    np.testing.assert_array_equal(y_s, y[keep])


def test_relabel_changes_only_the_flagged_labels(data, report):
    x, y = data
    x_s, y_s = Sanitize(report, action="relabel").apply(x, y)
    np.testing.assert_array_equal(x_s, x)
    np.testing.assert_array_equal(y_s[report.flagged], report.suggested_labels[report.flagged])
    np.testing.assert_array_equal(y_s[~report.flagged], y[~report.flagged])
    assert y_s.dtype == y.dtype


def test_relabel_keeps_one_hot_labels_one_hot(data, report):
    x, y = data
    one_hot = np.eye(5, dtype="float32")[y]
    _, y_s = Sanitize(report, action="relabel").apply(x, one_hot)
    assert y_s.dtype == np.float32 and y_s.shape == (N, 5)
    np.testing.assert_array_equal(y_s.argmax(axis=1)[report.flagged], report.suggested_labels[report.flagged])


@pytest.mark.parametrize("action", ["drop", "relabel"])
@pytest.mark.parametrize("batch_size", [None, 1, 7, 64])
def test_tf_data_matches_numpy_for_any_batch_size(data, report, action, batch_size):
    x, y = data
    expected = Sanitize(report, action=action).apply(x, y)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if batch_size:
        dataset = dataset.batch(batch_size)
    dataset = dataset.apply(Sanitize(report, action=action))
    if batch_size:
        dataset = dataset.unbatch()
    got = [np.stack(a) for a in zip(*[(xi.numpy(), yi.numpy()) for xi, yi in dataset])]
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_sanitize_before_shuffle_gives_the_same_set_as_numpy(data, report):
    x, y = data
    expected = Sanitize(report).apply(x, y)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).apply(Sanitize(report)).shuffle(N, seed=1)
    got_x = np.stack([xi.numpy() for xi, _ in dataset])
    order = lambda a: np.lexsort(a.reshape(len(a), -1).T)  # noqa: E731
    np.testing.assert_array_equal(got_x[order(got_x)], expected[0][order(expected[0])])


def test_relabel_with_a_mask_and_true_labels_undoes_a_random_flip(data):
    x, y = data
    _, noisy, mask = RandomFlip(0.25, num_classes=5, seed=0).poison(x, y)
    _, repaired = Sanitize(mask, action="relabel", suggested_labels=y).apply(x, noisy)
    np.testing.assert_array_equal(repaired, y)


def test_relabel_without_suggestions_is_rejected(report):
    bare = DetectionReport(report.scores, report.flagged, detector="spectral_signature")
    with pytest.raises(ValueError, match="suggested labels.*'spectral_signature'"):
        Sanitize(bare, action="relabel")


def test_unknown_action_is_rejected(report):
    with pytest.raises(ValueError, match=r"`action` in \('drop', 'relabel'\).*'weight'"):
        Sanitize(report, action="weight")


def test_data_of_another_size_is_rejected(data, report):
    x, y = data
    with pytest.raises(ValueError, match=f"the {N} examples the report was made on"):
        Sanitize(report).apply(x[:-1], y[:-1])
    with pytest.raises(ValueError, match=f"the {N} examples"):
        tf.data.Dataset.from_tensor_slices((x[:-1], y[:-1])).apply(Sanitize(report))


def test_batched_stream_longer_than_the_report_is_rejected_at_build_time(data, report):
    x, y = data
    longer = tf.data.Dataset.from_tensor_slices((np.concatenate([x, x]), np.concatenate([y, y])))
    with pytest.raises(ValueError, match="Received: a dataset of 80 examples"):
        longer.batch(16).apply(Sanitize(report))


def test_stream_of_unseen_size_longer_than_the_report_is_refused_or_fails_when_read(data, report):
    x, y = data
    # From a generator the size is unknown until the stream is read.
    longer = tf.data.Dataset.from_generator(
        lambda: iter(zip(np.concatenate([x, x]), np.concatenate([y, y]))),
        output_signature=(
            tf.TensorSpec(x.shape[1:], tf.as_dtype(x.dtype)),
            tf.TensorSpec((), tf.as_dtype(y.dtype)),
        ),
    )
    # A batched stream of unseen size could hold other examples: refused.
    with pytest.raises(ValueError, match="Apply Sanitize before `batch`"):
        longer.batch(16).apply(Sanitize(report))
    # Unbatched, the positions are checked as the stream is read.
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="more examples than the report|Sanitize: the stream does not hold num_examples=40",
    ):
        list(longer.apply(Sanitize(report)))


def test_regression_generator_stream_shorter_than_the_report_fails_when_read(data, report):
    x, y = data
    # Was a silent partial sanitize: the first examples only, no error.
    shorter = tf.data.Dataset.from_generator(
        lambda: iter(zip(x[:-3], y[:-3])),
        output_signature=(
            tf.TensorSpec(x.shape[1:], tf.as_dtype(x.dtype)),
            tf.TensorSpec((), tf.as_dtype(y.dtype)),
        ),
    )
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="Sanitize: the stream does not hold num_examples=40.*key=.+content"):
        list(shorter.apply(Sanitize(report)))


def test_suggested_label_beyond_the_one_hot_width_is_rejected(data, report):
    x, y = data
    with pytest.raises(ValueError, match="one-hot width 3"):
        Sanitize(report, action="relabel").apply(x, np.eye(3)[y % 3])


@pytest.mark.parametrize("weights", [False, True])
def test_unbatched_drop_is_done_in_blocks_and_states_the_size_left(data, report, weights):
    # More than one block (512) of examples, some blocks losing many.
    rng = np.random.default_rng(1)
    n = 1300
    x = rng.uniform(size=(n, 2, 2, 1)).astype("float32")
    y = np.arange(n) % 5
    flagged = rng.random(n) < 0.3
    flagged[512:700] = True  # a run across a block boundary
    parts = (x, y, rng.random(n).astype("float32")) if weights else (x, y)
    ds = tf.data.Dataset.from_tensor_slices(parts).apply(Sanitize(flagged))
    assert int(ds.cardinality()) == n - flagged.sum()
    out = [np.stack([e[i].numpy() for e in ds]) for i in range(len(parts))]
    for got, want in zip(out, parts):
        assert got.tobytes() == want[~flagged].tobytes()


def test_unbatched_relabel_keeps_the_size(data, report):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(Sanitize(report, action="relabel"))
    assert int(ds.cardinality()) == N
    labels = np.array([int(label) for _, label in ds])
    np.testing.assert_array_equal(labels, Sanitize(report, action="relabel").apply(x, y)[1])


# ------------------------------------- regressions of the hostile-user pass


def test_one_hot_stream_and_arrays_agree_on_what_suggested_labels_are_checked():
    n = 6
    x = np.zeros((n, 2, 2, 1), np.float32) + np.arange(n, dtype=np.float32)[:, None, None, None]
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    flagged = np.eye(n, dtype=bool)[1]
    # Out of the one-hot width only where nothing is written: unflagged, or a drop.
    for action, suggested in (("drop", [5, 5, 0, 0, 0, 0]), ("relabel", [5, 2, 0, 0, 0, 0])):
        sanitize = Sanitize(DetectionReport(np.zeros(n), flagged,
                                            suggested_labels=np.array(suggested)), action)
        x_np, y_np = sanitize.apply(x, y)
        streamed = list(tf.data.Dataset.from_tensor_slices((x, y)).apply(sanitize)
                        .as_numpy_iterator())
        np.testing.assert_array_equal(np.stack([e[0] for e in streamed]), x_np)
        np.testing.assert_array_equal(np.stack([e[1] for e in streamed]), y_np)
    with pytest.raises(ValueError, match="class indices >= 0"):
        Sanitize(DetectionReport(np.zeros(n), flagged), "relabel",
                 suggested_labels=np.array([0, -1, 0, 0, 0, 0]))


def test_content_keyed_drop_accepts_flagged_duplicates_with_other_suggestions():
    x = np.zeros((3, 2, 2, 1), np.uint8)
    x[2] += 1
    y = np.array([0, 0, 1])
    report = DetectionReport(np.zeros(3), np.array([True, True, False]),
                             suggested_labels=np.array([1, 2, 0])).with_content_keys(x, y)
    x_kept, y_kept = Sanitize(report, "drop", key="content").apply(x, y)
    np.testing.assert_array_equal(y_kept, [1])
    with pytest.raises(ValueError, match="another suggested label than a flagged example"):
        Sanitize(report, "relabel", key="content")


def test_relabelling_label_smoothed_rows_keeps_them_smoothed_on_arrays_and_streams(data, report):
    x, y = data
    table = (np.eye(5) * 0.9 + 0.02).astype("float32")
    _, y_s = Sanitize(report, action="relabel").apply(x, table[y])
    expected = table[np.where(report.flagged, report.suggested_labels, y)]
    np.testing.assert_array_equal(y_s, expected)
    streamed = tf.data.Dataset.from_tensor_slices((x, table[y])).apply(Sanitize(report, action="relabel"))
    np.testing.assert_array_equal(np.stack([b for _, b in streamed.as_numpy_iterator()]), expected)
