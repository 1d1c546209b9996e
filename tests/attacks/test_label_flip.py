import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_poison import RandomFlip
from keras_poison import TargetedFlip
from keras_poison import confused_class_pairs
from keras_poison import relabel_seeds


def labels(n, k=10, seed=0):
    return np.random.default_rng(seed).integers(0, k, size=n)


@pytest.mark.parametrize("n,rate", [(1000, 0.2), (997, 0.13), (10, 0.05), (50, 1.0), (50, 0.0)])
def test_random_flip_flips_exactly_round_rate_n_labels(n, rate):
    y = labels(n)
    _, y_p, mask = RandomFlip(rate, 10, seed=4).poison(np.zeros((n, 2)), y)
    assert mask.sum() == round(rate * n)
    assert np.sum(y_p != y) == round(rate * n)


def test_random_flip_exact_count_holds_on_a_tf_data_stream():
    y = labels(777)
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((777, 2)), y))
    flipped = sum(int(m) for _, _, m in RandomFlip(0.2, 10).transform(ds, with_mask=True))
    assert flipped == round(0.2 * 777)


def test_random_flip_never_keeps_the_true_class():
    y = labels(2000)
    _, y_p, mask = RandomFlip(0.5, 10, seed=1).poison(np.zeros((2000, 1)), y)
    assert np.all(y_p[mask] != y[mask])


def test_random_flip_draws_new_classes_uniformly():
    n = 20000
    y = np.zeros(n, dtype=int)
    _, y_p, mask = RandomFlip(1.0, 5, seed=2).poison(np.zeros((n, 1)), y)
    counts = np.bincount(y_p, minlength=5)
    assert counts[0] == 0
    # Each of the 4 other classes gets ~n/4; 5 sigma of a binomial is ~300.
    np.testing.assert_allclose(counts[1:], n / 4, atol=300)


def test_random_flip_selection_is_uniform_over_positions():
    n = 10000
    _, _, mask = RandomFlip(0.2, 10, seed=3).poison(np.zeros((n, 1)), labels(n))
    first, second = mask[: n // 2].sum(), mask[n // 2 :].sum()
    assert abs(first - second) < 150


def test_targeted_flip_switches_to_partner_only():
    mapping = {0: 1, 1: 0, 2: 3, 3: 2}
    y = labels(1000, k=4)
    _, y_p, mask = TargetedFlip(mapping, rate=0.3, num_classes=4).poison(np.zeros((1000, 1)), y)
    assert mask.sum() == round(0.3 * 1000)
    for old, new in zip(y[mask], y_p[mask]):
        assert mapping[int(old)] == int(new)


def test_targeted_flip_leaves_classes_outside_the_mapping_alone():
    y = labels(1000, k=4)
    _, y_p, mask = TargetedFlip({2: 3}, rate=0.5, num_classes=4).poison(np.zeros((1000, 1)), y)
    assert np.all(y[mask] == 2) and np.all(y_p[mask] == 3)
    # About half of the class-2 examples switched.
    assert abs(mask.sum() - 0.5 * np.sum(y == 2)) < 0.1 * np.sum(y == 2)


def test_to_class_relabels_other_classes_to_the_target():
    y = labels(600, k=3)
    attack = TargetedFlip.to_class(0, rate=0.4, num_classes=3)
    _, y_p, mask = attack.poison(np.zeros((600, 1)), y)
    assert attack.mapping == {1: 0, 2: 0}
    assert np.all(y_p[mask] == 0) and np.all(y[mask] != 0)


def test_from_class_relabels_only_the_source_class():
    y = labels(600, k=3)
    attack = TargetedFlip.from_class(2, 1, rate=0.4, num_classes=3)
    _, y_p, mask = attack.poison(np.zeros((600, 1)), y)
    assert np.all(y[mask] == 2) and np.all(y_p[mask] == 1)


def test_confusion_matrix_pairs_the_most_confused_classes_first():
    cm = np.array(
        [
            [90, 1, 2, 7],
            [0, 80, 15, 5],
            [3, 12, 85, 0],
            [9, 1, 1, 89],
        ]
    )
    # Off-diagonal cm + cm.T: (1,2)=27, (0,3)=16, (1,3)=6, (0,2)=5, ...
    assert confused_class_pairs(cm) == [(1, 2), (0, 3)]
    attack = TargetedFlip.from_confusion_matrix(cm, rate=0.2, seed=1)
    assert attack.mapping == {1: 2, 2: 1, 0: 3, 3: 0}
    assert attack.num_classes == 4


def test_odd_class_count_sends_the_leftover_class_to_its_most_confused():
    cm = np.array([[50, 9, 1], [7, 60, 2], [1, 3, 70]])
    attack = TargetedFlip.from_confusion_matrix(cm)
    assert attack.mapping == {0: 1, 1: 0, 2: 1}
    y = labels(500, k=3)
    _, _, mask = attack.poison(np.zeros((500, 1)), y)
    # Every class is a source, so exactly rate * n labels switch.
    assert mask.sum() == round(0.2 * 500)


# ----------------------------------------------------------------------
# The pairing is the exact maximum-weight matching (it used to be greedy).


def _pair_weight(weights, pairs):
    return sum(weights[a, b] for a, b in pairs)


def _maximum_cardinality_pairings(classes):
    """Every pairing of `classes` that leaves at most one class unpaired."""
    classes = list(classes)
    if len(classes) < 2:
        yield []
        return
    if len(classes) % 2:
        # Odd: try each class as the one left over.
        for leftover in classes:
            yield from _maximum_cardinality_pairings([c for c in classes if c != leftover])
        return
    first, rest = classes[0], classes[1:]
    for partner in rest:
        remaining = [c for c in rest if c != partner]
        for pairing in _maximum_cardinality_pairings(remaining):
            yield [(first, partner)] + pairing


def test_pairing_beats_greedy_when_the_heaviest_pair_forces_light_pairs():
    # Greedy took (0, 1) (weight 10), leaving (2, 3) at weight 0: total 10.
    # The maximum-weight pairing is (0, 2) + (1, 3): total 18.
    cm = np.array([[0, 10, 9, 0], [0, 0, 0, 9], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert confused_class_pairs(cm) == [(0, 2), (1, 3)]
    attack = TargetedFlip.from_confusion_matrix(cm)
    assert attack.mapping == {0: 2, 2: 0, 1: 3, 3: 1}


def test_pairs_are_sorted_most_confused_first_with_smaller_class_first():
    cm = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5], [0, 0, 2, 0]])
    assert confused_class_pairs(cm) == [(2, 3), (0, 1)]


def test_classes_never_confused_are_still_paired_so_the_flip_rate_is_exact():
    cm = np.diag([50, 50, 50, 50, 50, 50]).astype(float)
    cm[0, 1] = 4  # only classes 0 and 1 are ever confused
    pairs = confused_class_pairs(cm)
    assert pairs[0] == (0, 1) and len(pairs) == 3
    assert sorted(c for pair in pairs for c in pair) == list(range(6))
    attack = TargetedFlip.from_confusion_matrix(cm, rate=0.3, seed=2)
    assert sorted(attack.mapping) == list(range(6))
    y = labels(1000, k=6)
    _, y_p, mask = attack.poison(np.zeros((1000, 1)), y)
    assert mask.sum() == np.sum(y_p != y) == round(0.3 * 1000)


def test_all_zero_confusion_pairs_every_class():
    pairs = confused_class_pairs(np.zeros((4, 4)))
    assert len(pairs) == 2 and sorted(c for p in pairs for c in p) == [0, 1, 2, 3]


def test_odd_class_count_leaves_out_the_class_whose_absence_costs_least():
    # (0,1)=8 and (2,3)=8 are the best two pairs; 4 is left over and sent
    # to the class it is most confused with (2).
    w = np.zeros((5, 5))
    w[0, 1], w[2, 3], w[0, 4], w[2, 4] = 8, 8, 3, 5
    assert confused_class_pairs(w) == [(0, 1), (2, 3)]
    mapping = TargetedFlip.from_confusion_matrix(w).mapping
    assert mapping == {0: 1, 1: 0, 2: 3, 3: 2, 4: 2}


def test_pairing_is_the_same_on_every_call_even_with_ties():
    cm = np.ones((6, 6))
    first = confused_class_pairs(cm)
    assert all(confused_class_pairs(cm.copy()) == first for _ in range(5))
    assert first == sorted(first)


@st.composite
def confusion_matrices(draw):
    k = draw(st.integers(2, 7))
    return draw(hnp.arrays(np.int64, (k, k), elements=st.integers(0, 20)))


@settings(max_examples=150, deadline=None)
@given(confusion_matrices())
def test_pairing_total_weight_equals_the_brute_force_optimum(cm):
    k = len(cm)
    weights = cm + cm.T
    pairs = confused_class_pairs(cm)
    # Maximum cardinality: every class paired, or all but one when k is odd.
    assert len(pairs) == k // 2
    flat = [c for pair in pairs for c in pair]
    assert len(set(flat)) == len(flat) and all(a < b for a, b in pairs)
    best = max(
        _pair_weight(weights, pairing) for pairing in _maximum_cardinality_pairings(range(k))
    )
    assert _pair_weight(weights, pairs) == best
    assert [weights[p] for p in pairs] == sorted((weights[p] for p in pairs), reverse=True)
    # The flip mapping covers every class.
    assert sorted(TargetedFlip.from_confusion_matrix(cm).mapping) == list(range(k))


# ----------------------------------------------------------------------
# relabel_seeds: the class-oriented paper's FL / FL-1 / FL-2 baselines.


def test_relabel_seeds_relabels_only_the_given_seeds_and_keeps_images():
    x = np.random.default_rng(0).uniform(size=(20, 3, 3, 1)).astype("float32")
    y = np.arange(20) % 4
    seeds = np.array([13, 2, 5, 8, 19])
    x_p, y_p, mask = relabel_seeds(x, y, seeds, label=1).poison(x, y)
    np.testing.assert_array_equal(x_p, x)
    assert y_p[seeds].tolist() == [1] * 5
    others = np.setdiff1d(np.arange(20), seeds)
    np.testing.assert_array_equal(y_p[others], y[others])
    # 13 and 5 already were class 1: seeds, but nothing changed for them.
    assert np.flatnonzero(mask).tolist() == [2, 8, 19]


def test_relabel_seeds_with_source_classes_relabels_only_their_seeds():
    y = np.arange(12) % 3
    flip = relabel_seeds(np.zeros((12, 2, 2, 1)), y, np.arange(12), label=0, source_classes=[2])
    assert flip.poisons.source_indices.tolist() == [2, 5, 8, 11]
    assert flip.poisons.source_labels.tolist() == [2, 2, 2, 2]


def test_relabel_seeds_keeps_one_hot_labels_and_works_on_a_stream():
    x = np.zeros((10, 2, 2, 1), "float32")
    y = np.eye(5, dtype="float32")[np.arange(10) % 5]
    flip = relabel_seeds(x, y, [0, 3, 6], label=4)
    _, y_p, mask = flip.poison(x, y)
    assert y_p.shape == (10, 5) and y_p.dtype == np.float32
    assert np.argmax(y_p[[0, 3, 6]], axis=1).tolist() == [4, 4, 4]
    streamed = tf.data.Dataset.from_tensor_slices((x, y)).apply(flip).batch(4)
    np.testing.assert_array_equal(np.concatenate([b for _, b in streamed.as_numpy_iterator()]), y_p)


def test_flipping_label_smoothed_rows_keeps_them_smoothed_on_arrays_and_streams():
    # A hard row among smoothed ones would give every flip away (and train on other labels).
    k, smoothing = 5, 0.1
    y = labels(60, k=k, seed=3)
    soft = (np.eye(k) * (1 - smoothing) + smoothing / k)[y].astype("float32")
    x = np.zeros((60, 2), "float32")
    attack = RandomFlip(0.3, k, seed=2)
    _, y_p, mask = attack.poison(x, soft)
    expected = (np.eye(k) * (1 - smoothing) + smoothing / k)[np.argmax(y_p, 1)].astype("float32")
    np.testing.assert_array_equal(y_p, expected)
    np.testing.assert_array_equal(y_p[~mask], soft[~mask])
    assert mask.sum() == 18 and np.all(np.argmax(y_p[mask], 1) != y[mask])
    streamed = tf.data.Dataset.from_tensor_slices((x, soft)).batch(7).apply(attack)
    np.testing.assert_array_equal(np.concatenate([b for _, b in streamed.as_numpy_iterator()]), y_p)
