"""DetectionReport: scoring against ground truth, ranking, files."""

import numpy as np
import pytest

from keras_poison import DetectionReport


def make_report(**kwargs):
    defaults = dict(
        scores=np.array([0.9, 0.1, 0.8, 0.2, 0.7]),
        flagged=np.array([True, False, True, False, False]),
        suggested_labels=np.array([1, 0, 2, 1, 0]),
        given_labels=np.array([0, 0, 1, 1, 0]),
        detector="test",
        details={"k": 3},
    )
    defaults.update(kwargs)
    return DetectionReport(**defaults)


def test_evaluate_counts_precision_recall_f1_and_auroc():
    truth = np.array([True, False, False, False, True])
    metrics = make_report().evaluate(truth)
    assert metrics.precision == 0.5
    assert metrics.recall == 0.5
    assert metrics.f1 == 0.5
    # Poisoned scores 0.9, 0.7 against clean 0.8, 0.2, 0.1: 5 of 6 pairs.
    assert metrics.auroc == pytest.approx(5 / 6)
    assert (metrics.num_flagged, metrics.num_poisoned) == (2, 2)


def test_evaluate_without_flagged_examples_gives_nan_precision():
    metrics = make_report(flagged=np.zeros(5, bool)).evaluate(np.array([1, 0, 0, 0, 0], bool))
    assert np.isnan(metrics.precision) and metrics.recall == 0.0 and np.isnan(metrics.f1)


def test_evaluate_with_one_kind_of_example_gives_nan_auroc():
    assert np.isnan(make_report().evaluate(np.zeros(5, bool)).auroc)


def test_evaluate_rejects_mask_of_wrong_length():
    with pytest.raises(ValueError, match=r"true_mask.*\(5,\).*\(4,\)"):
        make_report().evaluate(np.zeros(4, bool))


def test_ranking_puts_most_suspicious_first_and_top_cuts_it():
    report = make_report()
    assert report.ranking.tolist() == [0, 2, 4, 3, 1]
    assert report.top(2).tolist() == [0, 2]


def test_with_flagged_accepts_indices():
    assert make_report().with_flagged([1, 3]).flagged_indices.tolist() == [1, 3]


def test_save_and_load_round_trip(tmp_path):
    report = make_report()
    report.save(tmp_path / "report.npz")
    loaded = DetectionReport.load(tmp_path / "report.npz")
    np.testing.assert_array_equal(loaded.scores, report.scores)
    np.testing.assert_array_equal(loaded.flagged, report.flagged)
    np.testing.assert_array_equal(loaded.suggested_labels, report.suggested_labels)
    np.testing.assert_array_equal(loaded.given_labels, report.given_labels)
    assert loaded.detector == "test" and loaded.details == {"k": 3}


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, format_version=np.array(1), scores=np.array([object()], dtype=object),
             flagged=np.array([True]))
    with pytest.raises(ValueError, match="Could not read"):
        DetectionReport.load(path)


def test_load_rejects_truncated_file(tmp_path):
    make_report().save(tmp_path / "report.npz")
    data = (tmp_path / "report.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        DetectionReport.load(tmp_path / "cut.npz")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scores=np.array([0.1, np.nan, 0.2, 0.3, 0.4])), "finite"),
        (dict(flagged=np.array([True, False])), "flagged"),
        (dict(suggested_labels=np.array([0.5, 1, 1, 1, 1])), "suggested_labels"),
        (dict(details={"model": object()}), "not JSON serializable"),
    ],
)
def test_bad_inputs_are_rejected(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_report(**kwargs)


def test_consensus_flags_only_where_every_report_flags_and_suggests_the_same_label():
    from keras_poison.defences.detectors import consensus

    a = make_report()  # flags 0 and 2, suggests 1 and 2
    b = make_report(
        flagged=np.array([True, True, True, False, False]),
        suggested_labels=np.array([1, 0, 0, 1, 0]),
        detector="other",
    )
    agreed = consensus(a, b)
    assert agreed.flagged_indices.tolist() == [0]
    assert agreed.detector == "consensus(test, other)"
    np.testing.assert_array_equal(agreed.given_labels, a.given_labels)


def test_consensus_of_reports_on_other_examples_is_rejected():
    from keras_poison.defences.detectors import consensus

    shorter = DetectionReport(np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match=r"same examples.*\[3, 5\]"):
        consensus(make_report(), shorter)


def test_rank_average_flags_the_best_mean_ranks_as_many_as_the_reports_flag_on_average():
    from keras_poison import rank_average

    a = make_report()  # scores 0.9 0.1 0.8 0.2 0.7, flags 2
    b = make_report(
        scores=np.array([0.3, 0.2, 0.9, 0.1, 0.8]),
        flagged=np.array([True, False, True, False, True]),  # flags 3
        suggested_labels=np.array([2, 2, 2, 2, 2]),
        detector="other",
    )
    combined = rank_average(a, b)
    # Ranks (0 = least suspicious): a 4 0 3 1 2, b 2 1 4 0 3; means / 4.
    np.testing.assert_allclose(combined.scores, [0.75, 0.125, 0.875, 0.125, 0.625])
    # round(mean(2, 3)) = 2 (NumPy rounds half to even).
    assert combined.flagged_indices.tolist() == [0, 2]
    assert combined.details == {"num_flagged": 2}
    assert combined.detector == "rank_average(test, other)"
    # The first report's suggestions and given labels are kept.
    np.testing.assert_array_equal(combined.suggested_labels, a.suggested_labels)
    np.testing.assert_array_equal(combined.given_labels, a.given_labels)


def test_rank_average_with_a_count_flags_exactly_that_many():
    from keras_poison import rank_average

    other = make_report(scores=np.array([0.5, 0.4, 0.3, 0.2, 0.1]))
    for count in (0, 3, 5):
        assert rank_average(make_report(), other, num_flagged=count).flagged.sum() == count


def test_rank_average_beats_each_noisy_detector_when_their_errors_are_independent():
    from keras_poison import rank_average

    rng = np.random.default_rng(0)
    truth = rng.random(2000) < 0.2
    # Two detectors seeing the same signal through independent noise.
    reports = [
        DetectionReport(truth + rng.normal(0, 0.6, 2000), np.zeros(2000, bool))
        for _ in range(2)
    ]
    reports = [r.with_flagged(r.top(int(truth.sum()))) for r in reports]
    combined = rank_average(*reports)
    single = max(r.evaluate(truth).f1 for r in reports)
    assert combined.evaluate(truth).f1 > single + 0.03
    assert combined.evaluate(truth).auroc > max(r.evaluate(truth).auroc for r in reports)


@pytest.mark.parametrize("num_flagged", [-1, 6, 2.5, True, "median"])
def test_rank_average_rejects_a_bad_count(num_flagged):
    from keras_poison import rank_average

    with pytest.raises(ValueError, match=rf"num_flagged.*between 0 and .*\(5\).*{num_flagged!r}"):
        rank_average(make_report(), make_report(), num_flagged=num_flagged)


def test_rank_average_needs_two_reports_on_the_same_examples():
    from keras_poison import rank_average

    with pytest.raises(TypeError, match="two or more DetectionReports"):
        rank_average(make_report())
    with pytest.raises(ValueError, match=r"same examples.*\[3, 5\]"):
        rank_average(make_report(), DetectionReport(np.zeros(3), np.zeros(3, bool)))


def test_rank_average_gives_tied_scores_the_same_rank_whatever_their_order():
    from keras_poison import rank_average

    # b ties examples 1 and 3; a alone must then decide between them.
    a = DetectionReport(np.array([0.1, 0.2, 0.3, 0.4]), np.zeros(4, bool))
    b = DetectionReport(np.array([0.9, 0.5, 0.0, 0.5]), np.zeros(4, bool))
    scores = rank_average(a, b, num_flagged=1).scores
    # Ranks: a 0 1 2 3, b 3 1.5 0 1.5.
    np.testing.assert_allclose(scores, np.array([1.5, 1.25, 1.0, 2.25]) / 3)
    assert rank_average(a, b, num_flagged=1).flagged_indices.tolist() == [3]


def test_repr_shows_detector_counts_and_config_not_arrays():
    report = make_report(details={"k": 3, "threshold": 0.5, "classes": {0: {"n": 2}, 1: {}}})
    text = repr(report)
    assert text == (
        "DetectionReport(detector='test', num_examples=5, num_flagged=2, "
        "suggests_labels=True, details={'k': 3, 'threshold': 0.5, 'classes': <dict of 2>})"
    )
    assert "0.9" not in text and "array" not in text
    images = np.arange(5, dtype="uint8").reshape(5, 1, 1, 1)
    keyed = report.with_content_keys(images, np.arange(5))
    assert "num_flagged=2, suggests_labels=True, content_keys=True, details=" in repr(keyed)


def test_repr_of_a_bare_report_has_only_the_counts():
    report = DetectionReport(np.zeros(1000), np.arange(1000) < 7)
    assert repr(report) == "DetectionReport(detector='unknown', num_examples=1000, num_flagged=7)"


# ------------------------------------- regressions of the hostile-user pass


def test_with_flagged_takes_a_bool_mask_or_indices_and_refuses_a_0_1_integer_mask():
    report = DetectionReport(np.array([0.9, 0.1, 0.8, 0.2]), np.array([True, False, True, False]))
    assert report.with_flagged(np.array([False, True, False, True])).flagged_indices.tolist() == [1, 3]
    assert report.with_flagged(report.top(1)).flagged_indices.tolist() == [0]
    assert report.with_flagged(np.array([3, 1])).flagged_indices.tolist() == [1, 3]
    with pytest.raises(ValueError, match="0/1 mask, not indices"):
        report.with_flagged(np.array([0, 1, 0, 1]))
    with pytest.raises(TypeError, match="bool mask or integer indices"):
        report.with_flagged(np.array([0.0, 1.0, 0.0, 1.0]))
    for bad in ([-1], [4]):
        with pytest.raises(ValueError, match=r"indices in \[0, 4\)"):
            report.with_flagged(bad)


def test_reports_on_the_data_in_another_order_are_refused_and_keys_carried():
    from keras_poison import consensus
    from keras_poison import rank_average

    x = np.arange(16, dtype=np.uint8).reshape(4, 2, 2, 1)
    y = np.array([0, 1, 0, 1])
    a = DetectionReport(np.array([.9, .1, .8, .2]), np.array([1, 0, 1, 0])).with_content_keys(x, y)
    order = [3, 2, 1, 0]
    b = DetectionReport(a.scores[order], a.flagged[order]).with_content_keys(x[order], y[order])
    for combine in (consensus, rank_average):
        with pytest.raises(ValueError, match="same order.*`content_keys` at example 0"):
            combine(a, b)
    c = DetectionReport(np.array([.7, .2, .9, .1]), np.array([1, 0, 1, 0])).with_content_keys(x, y)
    for combine in (consensus, rank_average):
        combined = combine(a, c)
        np.testing.assert_array_equal(combined.content_keys, a.content_keys)
        assert combined.flagged_indices.tolist() == [0, 2]
    seen = DetectionReport(np.zeros(4), np.zeros(4, bool), given_labels=np.array([0, 1, 0, 1]))
    other = DetectionReport(np.zeros(4), np.zeros(4, bool), given_labels=np.array([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="`given_labels` at example 0"):
        rank_average(seen, other)


def test_negative_suggested_labels_are_refused():
    with pytest.raises(ValueError, match="class indices >= 0"):
        DetectionReport(np.zeros(3), np.zeros(3, bool), suggested_labels=np.array([0, -1, 0]))
