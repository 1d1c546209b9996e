import numpy as np
import pytest

from keras_poison import metrics

# Hand-built COEG example, supplanter s = 2, K = 4 (class 3 absent).
#   class 0 (N=2): before [0, 0], after [2, 0] -> (1 - 0 + 0 - 0) / 2 = 0.5
#   class 1 (N=4): before [1, 2, 1, 1], after [2, 2, 2, 1]
#                  -> ((1-0) + (1-1) + (1-0) + (0-0)) / 4 = 0.5
#                  (its second example was already predicted as s: no change)
#   class 2 (N=1): before [0], after [2] -> 1.0 (excluded from overall)
#   overall (eq. 9) = (2 * 0.5 + 4 * 0.5) / (2 + 4) = 0.5
Y_TRUE = np.array([0, 0, 1, 1, 1, 1, 2])
BEFORE = np.array([0, 0, 1, 2, 1, 1, 0])
AFTER = np.array([2, 0, 2, 2, 2, 1, 2])


def one_hot(labels, k):
    return np.eye(k)[labels]


# accuracy / macro_f1 / confusion_matrix


def test_accuracy_of_sparse_labels():
    assert metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


def test_accuracy_argmaxes_probability_rows():
    probs = [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]
    assert metrics.accuracy([0, 1, 1], probs) == pytest.approx(2 / 3)


def test_accuracy_accepts_column_vector_labels():
    assert metrics.accuracy(np.array([[0], [1]]), [0, 0]) == 0.5


def test_macro_f1_averages_per_class_f1():
    # class 0: P=1, R=1/2 -> F1=2/3; class 1: P=2/3, R=1 -> F1=4/5
    score = metrics.macro_f1([0, 0, 1, 1], [0, 1, 1, 1])
    assert score == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_macro_f1_counts_absent_classes_as_zero():
    score = metrics.macro_f1([0, 0, 1, 1], [0, 1, 1, 1], num_classes=3)
    assert score == pytest.approx((2 / 3 + 4 / 5) / 3)


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = metrics.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], num_classes=4)
    expected = np.array(
        [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_infers_size_from_one_hot_width():
    cm = metrics.confusion_matrix(one_hot([0, 1], 5), [0, 1])
    assert cm.shape == (5, 5)


# ctt_rate


def test_ctt_per_class_matches_hand_computation():
    result = metrics.ctt_rate(Y_TRUE, BEFORE, AFTER, supplanter=2, num_classes=4)
    np.testing.assert_allclose(result.per_class[:3], [0.5, 0.5, 1.0])


def test_ctt_is_nan_for_absent_class():
    result = metrics.ctt_rate(Y_TRUE, BEFORE, AFTER, supplanter=2, num_classes=4)
    assert np.isnan(result.per_class[3])
    assert result.counts.tolist() == [2, 4, 1, 0]


def test_ctt_overall_excludes_supplanter_class():
    result = metrics.ctt_rate(Y_TRUE, BEFORE, AFTER, supplanter=2, num_classes=4)
    # Including class 2 would give (1 + 2 + 1) / 7.
    assert result.overall == pytest.approx(0.5)


def test_ctt_overall_weights_classes_by_size():
    # class 0 (N=1): 1.0; class 1 (N=3): 1/3; supplanter 2 (N=1) ignored.
    # Eq. 9: (1 * 1 + 3 * 1/3) / 4 = 0.5, not the unweighted (1 + 1/3) / 2.
    y_true = [0, 1, 1, 1, 2]
    before = [0, 1, 1, 1, 2]
    after = [2, 2, 1, 1, 2]
    result = metrics.ctt_rate(y_true, before, after, supplanter=2)
    np.testing.assert_allclose(result.per_class, [1.0, 1 / 3, 0.0])
    assert result.overall == pytest.approx(0.5)


def test_ctt_is_negative_when_poisoning_moves_away_from_supplanter():
    result = metrics.ctt_rate([0, 0], [1, 1], [0, 0], supplanter=1)
    assert result.per_class[0] == -1.0
    assert result.overall == -1.0


def test_ctt_accepts_probability_rows():
    result = metrics.ctt_rate(
        one_hot(Y_TRUE, 4), one_hot(BEFORE, 4), one_hot(AFTER, 4), supplanter=2
    )
    assert result.overall == pytest.approx(0.5)


def test_ctt_result_arrays_are_read_only():
    result = metrics.ctt_rate(Y_TRUE, BEFORE, AFTER, supplanter=2)
    with pytest.raises(ValueError):
        result.per_class[0] = 0.0


def test_ctt_rejects_supplanter_out_of_range():
    with pytest.raises(ValueError, match="supplanter=4"):
        metrics.ctt_rate(Y_TRUE, BEFORE, AFTER, supplanter=4, num_classes=4)


def test_ctt_rejects_non_integer_supplanter():
    with pytest.raises(TypeError, match="supplanter"):
        metrics.ctt_rate(Y_TRUE, BEFORE, AFTER, supplanter=1.5)


def test_ctt_rejects_validation_set_of_only_supplanter_examples():
    with pytest.raises(ValueError, match="outside the supplanter class"):
        metrics.ctt_rate([1, 1], [0, 0], [1, 1], supplanter=1, num_classes=2)


# cft_rate


def test_cft_is_accuracy_drop_per_class():
    # class 0 (N=2): correct before [1, 1], after [1, 0] -> 0.5 drop
    # class 1 (N=3): correct before [1, 0, 1], after [1, 1, 1] -> -1/3
    # class 2 (N=1): correct before [1], after [0] -> 1.0 (the victim)
    y_true = [0, 0, 1, 1, 1, 2]
    before = [0, 0, 1, 0, 1, 2]
    after = [0, 1, 1, 1, 1, 0]
    cft = metrics.cft_rate(y_true, before, after)
    np.testing.assert_allclose(cft, [0.5, -1 / 3, 1.0])


def test_cft_is_positive_when_victim_is_harmed():
    cft = metrics.cft_rate([1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 0])
    assert cft[1] == pytest.approx(0.75)


def test_cft_is_nan_for_absent_class():
    cft = metrics.cft_rate([0, 0], [0, 0], [0, 1], num_classes=3)
    assert cft[0] == 0.5
    assert np.isnan(cft[1]) and np.isnan(cft[2])


# validation


def test_rejects_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"len\(y_true\)=3, len\(y_pred\)=2"):
        metrics.accuracy([0, 1, 1], [0, 1])


def test_rejects_label_not_below_num_classes():
    with pytest.raises(ValueError, match=r"pred_after.*\[0, 3\).*contains 3"):
        metrics.cft_rate([0, 1], [0, 1], [0, 3], num_classes=3)


def test_rejects_negative_label():
    with pytest.raises(ValueError, match="y_true"):
        metrics.confusion_matrix([0, -1], [0, 1])


def test_rejects_non_integer_sparse_labels():
    with pytest.raises(ValueError, match="integer class indices"):
        metrics.accuracy([0.5, 1.0], [0, 1])


def test_rejects_num_classes_below_two():
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        metrics.macro_f1([0, 0], [0, 0], num_classes=1)


def test_rejects_sparse_label_beyond_one_hot_width():
    with pytest.raises(ValueError, match=r"y_pred.*\[0, 3\).*contains 5"):
        metrics.accuracy(one_hot([0, 1], 3), [0, 5])


def test_rejects_one_hot_width_different_from_num_classes():
    with pytest.raises(ValueError, match=r"y_pred.shape\[-1\]=3"):
        metrics.confusion_matrix([0, 1], one_hot([0, 1], 3), num_classes=4)


def test_rejects_empty_inputs():
    with pytest.raises(ValueError, match="at least one example"):
        metrics.accuracy([], [])


def test_score_rows_with_nan_are_refused_not_argmaxed():
    # A diverged model's NaN rows argmaxed to a plausible accuracy (hostile-user pass).
    y_true = np.array([0, 1, 2, 1, 2, 0])
    with pytest.raises(ValueError, match="finite rows in `y_pred`.*diverged"):
        metrics.accuracy(y_true, np.full((6, 3), np.nan))
    scores = np.eye(3)[y_true] * 0.9
    scores[1, 0] = np.nan
    for metric in (metrics.accuracy, metrics.confusion_matrix, metrics.macro_f1):
        with pytest.raises(ValueError, match="NaN or infinite"):
            metric(y_true, scores)
