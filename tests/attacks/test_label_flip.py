import numpy as np
import pytest
import tensorflow as tf

from keras_poison import RandomFlip
from keras_poison import TargetedFlip
from keras_poison import confused_class_pairs


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
