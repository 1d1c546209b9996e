"""The stream contract over user-shaped pipelines: exact, or a clear error.

Hypothesis draws pipeline cases (image dtype and shape, label format,
element structure, batch size and remainder, an upstream op) for every
stream transform; `tests/stream_contract.py` runs each on a stream and on
the arrays. No case may be silent or fail unclearly; every pipeline Keras'
`fit` accepts must give the exact result, and a position-keyed transform
after an order-changing op must raise.
"""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_poison import ClassPatternNoise
from keras_poison import DetectionReport
from keras_poison import RandomFlip
from keras_poison import Sanitize
from tests import stream_contract as contract

cases = st.builds(
    contract.PipelineCase,
    transform=st.sampled_from(contract.TRANSFORMS),
    image_dtype=st.sampled_from(contract.IMAGE_DTYPES),
    image_shape=st.sampled_from(contract.IMAGE_SHAPES),
    label_format=st.sampled_from(contract.LABEL_FORMATS),
    structure=st.sampled_from(contract.STRUCTURES),
    batch_size=st.sampled_from(contract.BATCH_SIZES),
    drop_remainder=st.booleans(),
    upstream=st.sampled_from(contract.UPSTREAM),
    n=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_every_pipeline_is_exact_or_a_clear_error(case):
    outcome, detail = contract.run_case(case)
    if contract.must_be_exact(case):
        assert outcome == "exact", (case, outcome, detail)
    else:
        assert outcome == "error", (case, outcome, detail)


# -- The shapes that were silent before (issue 16), one regression each. ----


def _images(n=300, dtype="uint8"):
    return np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3)).astype(dtype)


def test_regression_column_labels_from_keras_datasets_flip_exactly_rate():
    x, y = _images(), np.random.default_rng(1).integers(0, 10, (300, 1)).astype("uint8")
    attack = RandomFlip(0.2, 10, seed=0)
    _, y_p, mask = attack.poison(x, y)
    out = list(attack.transform(tf.data.Dataset.from_tensor_slices((x, y)), with_mask=True))
    assert mask.sum() == 60 and sum(int(m) for _, _, m in out) == 60
    assert y_p.shape == (300, 1) and out[0][1].shape == (1,)
    np.testing.assert_array_equal(np.stack([label for _, label, _ in out]), y_p)


def test_regression_volumes_one_per_example_are_not_read_as_batches():
    # (depth, height, width, channels) per example read as a batch of images
    # gave each slice its own pattern, or flipped a one-hot row as 4 labels.
    x = np.random.default_rng(0).integers(0, 256, (12, 4, 5, 5, 1)).astype("uint8")
    y = np.arange(12) % 4
    for labels, attack in ((y[:, None], ClassPatternNoise(4, epsilon=8, fraction=0.5)),
                           (np.eye(4, dtype="float32")[y], RandomFlip(0.5, 4, seed=0))):
        stream = tf.data.Dataset.from_tensor_slices((x, labels))
        with pytest.raises(ValueError, match="reads two ways.*batched=True"):
            attack.transform(stream, num_examples=12)
        x_p, y_p, mask = attack.poison(x, labels)
        out = list(attack.transform(stream, batched=False, with_mask=True).as_numpy_iterator())
        np.testing.assert_array_equal(np.stack([e[0] for e in out]), x_p)
        np.testing.assert_array_equal(np.stack([e[1] for e in out]), y_p)
        np.testing.assert_array_equal(np.array([e[2] for e in out]), mask)


def test_regression_column_labels_with_class_pattern_noise_give_a_mask_per_example():
    x, y = _images(40), np.arange(40)[:, None] % 10
    attack = ClassPatternNoise(10, epsilon=8, fraction=0.5)
    x_p, _, mask = attack.poison(x, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    out = list(attack.transform(ds, with_mask=True).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([m for *_, m in out]), mask)
    np.testing.assert_array_equal(np.concatenate([im for im, *_ in out]), x_p)


def test_regression_sub_grey_level_epsilon_on_a_uint8_stream_raises_at_build_time():
    ds = tf.data.Dataset.from_tensor_slices((_images(10), np.zeros(10, "int64")))
    with pytest.raises(ValueError, match="epsilon"):
        ClassPatternNoise(10, epsilon=16 / 255).transform(ds)


@pytest.mark.parametrize(
    "upstream", [lambda d: d.shuffle(10), lambda d: d.repeat(2), lambda d: d.shard(2, 0)]
)
def test_regression_attack_after_an_order_changing_op_raises(upstream):
    ds = tf.data.Dataset.from_tensor_slices((_images(10), np.zeros(10, "int64")))
    with pytest.raises(ValueError, match="Apply the attack first"):
        RandomFlip(0.2, 10).transform(upstream(ds))


def test_regression_sanitize_after_shuffle_raises_and_content_keys_find_every_flag():
    x, y = _images(30), np.arange(30) % 10
    flagged = np.zeros(30, bool)
    flagged[::3] = True
    report = DetectionReport(flagged.astype(float), flagged)
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(30)
    with pytest.raises(ValueError, match="key='content'"):
        shuffled.apply(Sanitize(report))
    kept = list(shuffled.apply(Sanitize(report.with_content_keys(x, y), key="content")))
    kept_images = {np.asarray(image).tobytes() for image, _ in kept}
    assert kept_images == {x[i].tobytes() for i in np.flatnonzero(~flagged)}


def test_regression_integer_one_hot_labels_on_an_unbatched_stream_stay_one_hot():
    x, y = _images(20), np.eye(10, dtype="int64")[np.arange(20) % 10]
    attack = RandomFlip(0.5, 10, seed=3)
    _, y_p, _ = attack.poison(x, y)
    out = [label for _, label in attack.transform(tf.data.Dataset.from_tensor_slices((x, y)))]
    np.testing.assert_array_equal(np.stack(out), y_p)


def test_regression_float_labels_batched_by_num_classes_are_read_as_sparse():
    x = np.random.default_rng(0).uniform(size=(40, 8, 8)).astype("float32")
    y = (np.arange(40) % 10).astype("float32")
    attack = RandomFlip(0.5, 10, seed=3)
    _, y_p, _ = attack.poison(x, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10, drop_remainder=True)
    out = np.concatenate([label for _, label in attack.transform(ds).as_numpy_iterator()])
    np.testing.assert_array_equal(out, y_p)


def test_a_stream_that_reads_both_ways_asks_for_batched():
    # Ten (10, 10) grayscale images with ten labels, or one batch: from a
    # generator nothing in the pipeline says which.
    ds = tf.data.Dataset.from_generator(
        lambda: iter([]),
        output_signature=(tf.TensorSpec((10, 10)), tf.TensorSpec((10,))),
    )
    with pytest.raises(ValueError, match="batched=True"):
        RandomFlip(0.2, 10).transform(ds, num_examples=10)
    RandomFlip(0.2, 10).transform(ds, num_examples=10, batched=True)  # settles it


def test_sample_weights_pass_through_and_drop_with_their_example():
    x, y, w = _images(12), np.arange(12) % 10, np.arange(12, dtype="float32")
    flagged = np.arange(12) % 4 == 0
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(5)
    out = list(ds.apply(Sanitize(flagged)).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([e[2] for e in out]), w[~flagged])
    poisoned = list(RandomFlip(0.5, 10).transform(ds).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([e[2] for e in poisoned]), w)


def test_dict_inputs_take_the_only_image_shaped_input():
    x, meta, y = _images(12), np.arange(12, dtype="float32"), np.arange(12) % 10
    attack = ClassPatternNoise(10, epsilon=8)
    x_p, _, _ = attack.poison(x, y)
    ds = tf.data.Dataset.from_tensor_slices(({"pixels": x, "meta": meta}, y))
    out = list(attack.transform(ds).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([e[0]["pixels"] for e in out]), x_p)
    np.testing.assert_array_equal(np.stack([e[0]["meta"] for e in out]), meta)


def test_regression_a_batch_shrunk_after_batch_is_an_error_not_a_shifted_poisoned_set():
    x, y = _images(50), np.arange(50) % 10
    flagged = np.arange(50) % 3 == 0
    shrunk = tf.data.Dataset.from_tensor_slices((x, y)).batch(7).apply(Sanitize(flagged))
    with pytest.raises(tf.errors.InvalidArgumentError, match="changed the batches"):
        list(shrunk.apply(RandomFlip(0.2, 10)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="changed the batches"):
        list(shrunk.apply(Sanitize(flagged)))


def test_chained_attacks_on_a_batched_stream_equal_chained_poison_calls():
    x, y = _images(50), np.arange(50) % 10
    flip, pattern = RandomFlip(0.2, 10), ClassPatternNoise(10, epsilon=8)
    x1, y1, _ = flip.poison(x, y)
    x2, y2, _ = pattern.poison(x1, y1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(7).apply(flip).apply(pattern)
    out = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([e[0] for e in out]), x2)
    np.testing.assert_array_equal(np.concatenate([e[1] for e in out]), y2)


def test_bool_labels_are_a_clear_type_error_on_both_paths():
    x, y = _images(10), np.arange(10) % 2 == 0
    with pytest.raises(TypeError, match="integer or float dtype"):
        RandomFlip(0.2, 2).poison(x, y)
    with pytest.raises(TypeError, match="integer or float dtype"):
        RandomFlip(0.2, 2).transform(tf.data.Dataset.from_tensor_slices((x, y)))


def test_regression_nested_inputs_are_refused_not_poisoned_in_the_wrong_place():
    x, y = _images(10), np.arange(10) % 10
    ds = tf.data.Dataset.from_tensor_slices(({"a": {"img": x}, "m": np.zeros(10, "float32")}, y))
    with pytest.raises(TypeError, match="nested inputs"):
        ClassPatternNoise(10, epsilon=8).transform(ds)


def test_regression_index_sanitize_after_skip_on_a_batched_stream_is_refused():
    x, y = _images(40), np.arange(40) % 10
    flagged = np.zeros(40, bool)
    flagged[[1, 5, 20]] = True
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).skip(1)
    with pytest.raises(ValueError, match="Apply Sanitize before `batch`"):
        ds.apply(Sanitize(flagged))


def _generator(x, y, batch=None):
    """A stream whose size the pipeline does not show."""

    def rows():
        if batch is None:
            yield from zip(x, y)
        else:
            for start in range(0, len(x), batch):
                yield x[start : start + batch], y[start : start + batch]

    lead = () if batch is None else (None,)
    return tf.data.Dataset.from_generator(
        rows,
        output_signature=(
            tf.TensorSpec(lead + x.shape[1:], tf.as_dtype(x.dtype)),
            tf.TensorSpec(lead, tf.as_dtype(y.dtype)),
        ),
    )


@pytest.mark.parametrize("batch", [None, 16])
def test_regression_a_stated_size_larger_than_the_stream_is_an_error_not_a_lower_rate(batch):
    # num_examples=120 on 100 examples picked round(0.2 * 120) = 24 indices,
    # of which some never arrived: fewer poisons than the rate, silently.
    x, y = _images(100), np.arange(100) % 10
    attack = RandomFlip(0.2, 10, seed=1)
    if batch is None:  # the stated size is the stream's size from then on
        assert int(attack.transform(_generator(x, y, batch), num_examples=100).cardinality()) == 100
    # Batched or not, the message names the transform and the stated size.
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="RandomFlip: the stream does not hold num_examples=120"
    ):
        list(attack.transform(_generator(x, y, batch), num_examples=120))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="RandomFlip: the stream does not hold num_examples=90"
    ):
        list(attack.transform(_generator(x, y, batch), num_examples=90))
    # The true size gives the NumPy result, and keeps the batches as they were.
    _, y_p, mask = attack.poison(x, y)
    out = list(attack.transform(_generator(x, y, batch), num_examples=100, with_mask=True))
    np.testing.assert_array_equal(np.concatenate([np.reshape(e[1], -1) for e in out]), y_p)
    np.testing.assert_array_equal(np.concatenate([np.reshape(e[2], -1) for e in out]), mask)
    if batch is not None:
        assert [len(e[1]) for e in out] == [16] * 6 + [4]


def test_regression_a_stated_size_the_pipeline_contradicts_is_refused_at_build_time():
    x, y = _images(100), np.arange(100) % 10
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    for stream in (ds, ds.batch(16)):
        with pytest.raises(ValueError, match="holds 100 examples, but num_examples=120"):
            RandomFlip(0.2, 10).transform(stream, num_examples=120)
    RandomFlip(0.2, 10).transform(ds, num_examples=100)  # agreeing is fine


def test_regression_a_shuffle_inside_flat_map_or_interleave_is_refused():
    # The walk did not enter the function: each epoch poisoned another set.
    x, y = _images(30), np.arange(30) % 10
    parts = tf.data.Dataset.from_tensor_slices((x, y))

    def shuffled(i):
        return parts.shard(3, tf.cast(i, tf.int64)).shuffle(10)

    for ds in (
        tf.data.Dataset.range(3).flat_map(shuffled),
        tf.data.Dataset.range(3).interleave(shuffled, cycle_length=2),
        tf.data.Dataset.range(3).interleave(shuffled, cycle_length=2, num_parallel_calls=2),
    ):
        with pytest.raises(ValueError, match="whose function uses `shuffle`"):
            RandomFlip(0.2, 10).transform(ds, num_examples=30)
    # The same without the shuffle is deterministic and accepted.
    plain = tf.data.Dataset.range(3).flat_map(lambda i: parts.shard(3, i))
    _, y_p, _ = RandomFlip(0.2, 10).poison(x[np.r_[0:30:3, 1:30:3, 2:30:3]], y[np.r_[0:30:3, 1:30:3, 2:30:3]])
    out = list(RandomFlip(0.2, 10).transform(plain, num_examples=30).as_numpy_iterator())
    np.testing.assert_array_equal([e[1] for e in out], y_p)


def test_regression_an_attack_after_an_unbatched_sanitize_drop_is_refused_as_after_a_filter():
    # Sanitize drops inside its blocks (no `filter` op in the pipeline); the
    # positions after it are no longer the data's, so an attack must refuse.
    x, y = _images(40), np.arange(40) % 10
    flagged = np.zeros(40, bool)
    flagged[[3, 17]] = True
    dropped = tf.data.Dataset.from_tensor_slices((x, y)).apply(Sanitize(flagged))
    with pytest.raises(ValueError, match="filter"):
        RandomFlip(0.2, 10).transform(dropped.prefetch(2))


@pytest.mark.parametrize("drop_remainder", [False, True])
@pytest.mark.parametrize("attack", [RandomFlip(0.3, 10, seed=4), ClassPatternNoise(10, epsilon=8)],
                         ids=["flip", "pattern"])
def test_batches_numbered_by_their_batch_op_with_a_stated_size_equal_poison(attack, drop_remainder):
    x, y = _images(50), np.arange(50) % 10
    x_p, y_p, mask = attack.poison(x, y)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=drop_remainder)
    out = list(attack.transform(batches, num_examples=50, with_mask=True).as_numpy_iterator())
    kept = 48 if drop_remainder else 50
    assert np.concatenate([e[0] for e in out]).tobytes() == x_p[:kept].tobytes()
    np.testing.assert_array_equal(np.concatenate([e[1] for e in out]), y_p[:kept])
    np.testing.assert_array_equal(np.concatenate([e[2] for e in out]), mask[:kept])


def test_batches_cut_after_their_batch_op_are_refused_with_a_stated_size():
    x, y = _images(50), np.arange(50) % 10
    cut = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).map(lambda a, b: (a[:5], b[:5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="a batch.*size differs.*before the op"):
        list(RandomFlip(0.3, 10).transform(cut, num_examples=50))


def test_regression_a_shuffled_dataset_captured_by_flat_map_or_interleave_is_refused():
    # Built outside the function and captured, it was not seen (hostile-user pass).
    x, y = _images(40), np.arange(40) % 4
    attack = RandomFlip(0.25, 4, seed=1)
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(40)
    for captured in (
        tf.data.Dataset.range(1).flat_map(lambda _: shuffled),
        tf.data.Dataset.range(2).interleave(lambda i: shuffled.shard(2, i), cycle_length=2),
    ):
        with pytest.raises(ValueError, match="shuffle"):
            attack.transform(captured, num_examples=40)
    # The same without the shuffle is fine, and exact.
    plain = tf.data.Dataset.from_tensor_slices((x, y))
    _, y_p, _ = attack.poison(x, y)
    out = attack.transform(tf.data.Dataset.range(1).flat_map(lambda _: plain), num_examples=40)
    np.testing.assert_array_equal(np.array([label for _, label in out.as_numpy_iterator()]), y_p)
