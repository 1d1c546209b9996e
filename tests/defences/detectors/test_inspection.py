"""Tests for the visual inspection plots of `detectors/inspection.py`."""

import matplotlib.image
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from keras_poison.defences.detectors.inspection import plot_confusion_matrix
from keras_poison.defences.detectors.inspection import plot_suspicious
from keras_poison.defences.detectors.report import DetectionReport
from keras_poison.metrics import confusion_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["cat", "dog", "fox"]


def make_report(n=8, labels=True):
    scores = np.linspace(0.0, 1.0, n)[np.random.default_rng(0).permutation(n)]
    flagged = scores > 0.5
    if not labels:
        return DetectionReport(scores, flagged, detector="test")
    given = np.arange(n) % 3
    suggested = (np.arange(n) + 1) % 3
    return DetectionReport(scores, flagged, suggested, given, detector="test")


def rgb_images(n=8, size=6):
    return np.random.default_rng(1).random((n, size, size, 3))


def first_lines(fig):
    return [ax.get_title().splitlines()[0] for ax in fig.axes]


def shown_indices(fig):
    return [int(line.split()[0].lstrip("#")) for line in first_lines(fig)]


# ----------------------------------------------------------------------
# plot_suspicious: output.


def test_plot_suspicious_returns_figure_and_writes_nothing_without_path(tmp_path):
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=4)
    assert isinstance(fig, Figure)
    assert list(tmp_path.iterdir()) == []


def test_plot_suspicious_writes_valid_png_of_figure_size(tmp_path):
    path = tmp_path / "grid.png"
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=4, path=path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    width, height = fig.get_size_inches() * fig.dpi
    assert matplotlib.image.imread(path).shape[:2] == (round(height), round(width))


def test_plot_suspicious_accepts_str_path(tmp_path):
    path = str(tmp_path / "grid.png")
    plot_suspicious(make_report(), rgb_images(), num_examples=2, path=path)
    with open(path, "rb") as file:
        assert file.read(8) == PNG_MAGIC


def test_grid_has_one_axes_per_shown_example():
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=5, columns=3)
    assert len(fig.axes) == 5
    assert all(len(ax.images) == 1 for ax in fig.axes)


def test_num_examples_larger_than_n_is_clamped_to_n():
    fig = plot_suspicious(make_report(n=6), rgb_images(n=6), num_examples=25)
    assert len(fig.axes) == 6


def test_axes_follow_report_ranking():
    report = make_report()
    fig = plot_suspicious(report, rgb_images(), num_examples=5)
    assert shown_indices(fig) == report.ranking[:5].tolist()


def test_each_axes_draws_the_image_of_its_index():
    report = make_report()
    x = rgb_images()
    fig = plot_suspicious(report, x, num_examples=3)
    for ax, index in zip(fig.axes, report.ranking[:3]):
        np.testing.assert_allclose(ax.images[0].get_array(), x[index])


def test_columns_sets_grid_width():
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=7, columns=3)
    geometries = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert geometries == {(3, 3)}


def test_columns_shrink_to_number_of_examples():
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=2, columns=5)
    assert fig.axes[0].get_subplotspec().get_geometry()[:2] == (1, 2)


def test_titles_show_index_and_score():
    report = make_report()
    fig = plot_suspicious(report, rgb_images(), num_examples=3)
    for line, index in zip(first_lines(fig), report.ranking[:3]):
        assert line == f"#{index}  score {report.scores[index]:.3g}"


def test_titles_show_given_and_suggested_labels():
    report = make_report()
    fig = plot_suspicious(report, rgb_images(), num_examples=4)
    for ax, index in zip(fig.axes, report.ranking[:4]):
        lines = ax.get_title().splitlines()
        assert lines[1] == f"given: {report.given_labels[index]}"
        assert lines[2] == f"suggested: {report.suggested_labels[index]}"


def test_titles_use_class_names():
    report = make_report()
    fig = plot_suspicious(report, rgb_images(), num_examples=4, class_names=NAMES)
    for ax, index in zip(fig.axes, report.ranking[:4]):
        lines = ax.get_title().splitlines()
        assert lines[1] == f"given: {NAMES[report.given_labels[index]]}"
        assert lines[2] == f"suggested: {NAMES[report.suggested_labels[index]]}"


def test_titles_omit_labels_when_report_has_none():
    fig = plot_suspicious(make_report(labels=False), rgb_images(), num_examples=3)
    assert all(len(ax.get_title().splitlines()) == 1 for ax in fig.axes)


def test_titles_show_only_given_labels_when_report_suggests_none():
    report = DetectionReport(np.arange(4.0), np.ones(4, bool), given_labels=[0, 1, 2, 0])
    fig = plot_suspicious(report, rgb_images(n=4), num_examples=2)
    assert [ax.get_title().splitlines()[1:] for ax in fig.axes] == [["given: 0"], ["given: 2"]]


def test_true_mask_frames_hits_green_and_false_alarms_red():
    report = make_report()
    truth = np.zeros(8, bool)
    truth[report.ranking[0]] = True
    fig = plot_suspicious(report, rgb_images(), num_examples=2, true_mask=truth)
    hit, false_alarm = fig.axes
    assert all(s.get_edgecolor() == to_rgba("tab:green") for s in hit.spines.values())
    assert all(s.get_edgecolor() == to_rgba("tab:red") for s in false_alarm.spines.values())


def test_true_mask_adds_poisoned_or_clean_to_titles():
    report = make_report()
    truth = np.zeros(8, bool)
    truth[report.ranking[0]] = True
    fig = plot_suspicious(report, rgb_images(), num_examples=2, true_mask=truth)
    assert [ax.get_title().splitlines()[-1] for ax in fig.axes] == ["poisoned", "clean"]


def test_without_true_mask_frames_are_not_coloured():
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=2)
    colours = {s.get_edgecolor() for ax in fig.axes for s in ax.spines.values()}
    assert not colours & {to_rgba("tab:green"), to_rgba("tab:red")}


def test_default_title_names_detector_and_count():
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=3)
    assert fig.get_suptitle() == "3 most suspicious of 8 examples (test)"


def test_title_argument_replaces_default_title():
    fig = plot_suspicious(make_report(), rgb_images(), num_examples=3, title="Flagged by k-NN")
    assert fig.get_suptitle() == "Flagged by k-NN"


# ----------------------------------------------------------------------
# plot_suspicious: image formats.


def test_grayscale_images_without_channel_axis_are_drawn_in_gray():
    x = np.random.default_rng(2).random((8, 5, 5))
    fig = plot_suspicious(make_report(), x, num_examples=2)
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (5, 5)
    assert image.get_cmap().name == "gray"
    assert image.get_clim() == (0.0, 1.0)


def test_single_channel_images_are_drawn_in_gray():
    x = np.random.default_rng(2).random((8, 5, 5, 1))
    fig = plot_suspicious(make_report(), x, num_examples=2)
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (5, 5)
    assert image.get_cmap().name == "gray"


def test_uint8_images_are_scaled_from_0_255():
    report = make_report()
    x = np.random.default_rng(3).integers(0, 256, (8, 4, 4, 3)).astype(np.uint8)
    fig = plot_suspicious(report, x, num_examples=1)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), x[report.ranking[0]] / 255)


def test_uint8_grayscale_images_are_scaled_from_0_255():
    report = make_report()
    x = np.random.default_rng(3).integers(0, 256, (8, 4, 4)).astype(np.uint8)
    fig = plot_suspicious(report, x, num_examples=1)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), x[report.ranking[0]] / 255)


def test_float_images_in_unit_range_are_drawn_unchanged():
    report = make_report()
    x = rgb_images().astype(np.float32)
    fig = plot_suspicious(report, x, num_examples=1)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), x[report.ranking[0]], rtol=1e-6)


def test_float_images_outside_unit_range_are_min_max_rescaled_per_image():
    report = make_report()
    x = rgb_images() * 4.0 - 2.0
    fig = plot_suspicious(report, x, num_examples=2)
    for ax, index in zip(fig.axes, report.ranking[:2]):
        image = x[index]
        expected = (image - image.min()) / (image.max() - image.min())
        np.testing.assert_allclose(ax.images[0].get_array(), expected)


def test_constant_image_outside_unit_range_is_drawn_black():
    report = make_report()
    x = rgb_images() * 4.0 - 2.0
    x[report.ranking[0]] = 7.0
    fig = plot_suspicious(report, x, num_examples=1)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), 0.0)


# ----------------------------------------------------------------------
# plot_suspicious: bad input.


def test_report_of_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="`report`"):
        plot_suspicious({"scores": [1.0]}, rgb_images(n=1))


def test_x_with_wrong_length_raises():
    with pytest.raises(ValueError, match=r"`x` to have one image per score \(8\).*x.shape=\(7,"):
        plot_suspicious(make_report(), rgb_images(n=7))


@pytest.mark.parametrize("shape", [(8, 6, 6, 2), (8, 6, 6, 4), (8, 6), (8, 1, 6, 6, 3)])
def test_unsupported_image_shape_raises(shape):
    with pytest.raises(ValueError, match=r"`x` of shape .*x.shape="):
        plot_suspicious(make_report(), np.zeros(shape))


def test_non_numeric_images_raise_type_error():
    with pytest.raises(TypeError, match="`x`"):
        plot_suspicious(make_report(), np.full((8, 4, 4), "a"))


def test_non_finite_images_raise():
    x = rgb_images()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`x` to be finite"):
        plot_suspicious(make_report(), x)


@pytest.mark.parametrize("num_examples", [0, -3])
def test_num_examples_below_one_raises(num_examples):
    with pytest.raises(ValueError, match="`num_examples`"):
        plot_suspicious(make_report(), rgb_images(), num_examples=num_examples)


@pytest.mark.parametrize("num_examples", [2.5, True, "3"])
def test_num_examples_not_int_raises_type_error(num_examples):
    with pytest.raises(TypeError, match="`num_examples`"):
        plot_suspicious(make_report(), rgb_images(), num_examples=num_examples)


def test_columns_below_one_raises():
    with pytest.raises(ValueError, match="`columns`"):
        plot_suspicious(make_report(), rgb_images(), columns=0)


def test_class_names_too_short_for_labels_raises():
    with pytest.raises(ValueError, match=r"`class_names`.*at least 3.*len\(class_names\)=2"):
        plot_suspicious(make_report(), rgb_images(), class_names=["cat", "dog"])


def test_class_names_as_string_raises_type_error():
    with pytest.raises(TypeError, match="`class_names`"):
        plot_suspicious(make_report(), rgb_images(), class_names="cat")


def test_true_mask_with_wrong_length_raises():
    with pytest.raises(ValueError, match=r"`true_mask`.*true_mask.shape=\(7,\)"):
        plot_suspicious(make_report(), rgb_images(), true_mask=np.zeros(7, bool))


def test_true_mask_with_non_boolean_values_raises():
    with pytest.raises(ValueError, match="`true_mask` to hold booleans"):
        plot_suspicious(make_report(), rgb_images(), true_mask=np.full(8, 2))


def test_path_in_missing_folder_raises_before_drawing(tmp_path):
    path = tmp_path / "missing" / "grid.png"
    with pytest.raises(FileNotFoundError, match="folder of `path`"):
        plot_suspicious(make_report(), rgb_images(), path=path)
    assert not path.parent.exists()


def test_path_without_png_suffix_raises(tmp_path):
    with pytest.raises(ValueError, match="`path` to end in .png"):
        plot_suspicious(make_report(), rgb_images(), path=tmp_path / "grid.jpg")


def test_title_of_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="`title`"):
        plot_suspicious(make_report(), rgb_images(), title=3)


# ----------------------------------------------------------------------
# plot_confusion_matrix.


def cell_texts(fig):
    return [text.get_text() for text in fig.axes[0].texts]


def test_confusion_cell_texts_equal_counts():
    matrix = np.array([[5, 1, 0], [2, 7, 3], [0, 0, 9]])
    fig = plot_confusion_matrix(matrix)
    assert cell_texts(fig) == [str(v) for v in matrix.ravel()]


def test_confusion_cells_are_placed_at_row_true_column_predicted():
    matrix = np.array([[5, 1], [2, 7]])
    fig = plot_confusion_matrix(matrix)
    placed = {text.get_position(): text.get_text() for text in fig.axes[0].texts}
    assert placed == {(0, 0): "5", (1, 0): "1", (0, 1): "2", (1, 1): "7"}


def test_confusion_normalized_texts_are_row_shares():
    matrix = np.array([[1, 3], [2, 2]])
    fig = plot_confusion_matrix(matrix, normalize=True)
    assert cell_texts(fig) == ["0.25", "0.75", "0.50", "0.50"]


def test_confusion_normalized_image_holds_row_shares():
    matrix = np.array([[1, 3], [2, 2]])
    fig = plot_confusion_matrix(matrix, normalize=True)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), [[0.25, 0.75], [0.5, 0.5]])


def test_confusion_normalized_empty_row_shows_dashes():
    matrix = np.array([[1, 3], [0, 0]])
    fig = plot_confusion_matrix(matrix, normalize=True)
    assert cell_texts(fig)[2:] == ["-", "-"]


def test_confusion_float_matrix_texts_equal_entries():
    matrix = np.array([[0.5, 1.25], [2.0, 0.0]])
    fig = plot_confusion_matrix(matrix)
    assert [float(text) for text in cell_texts(fig)] == matrix.ravel().tolist()


def test_confusion_accepts_metrics_confusion_matrix():
    matrix = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], num_classes=3)
    fig = plot_confusion_matrix(matrix)
    assert cell_texts(fig) == ["1", "1", "0", "0", "1", "0", "1", "0", "1"]


def test_confusion_uses_class_names_as_tick_labels():
    fig = plot_confusion_matrix(np.eye(3, dtype=int), class_names=NAMES)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES


def test_confusion_axis_labels_name_true_and_predicted():
    ax = plot_confusion_matrix(np.eye(2, dtype=int)).axes[0]
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("True class", "Predicted class")


def test_confusion_title_argument_replaces_default_title():
    fig = plot_confusion_matrix(np.eye(2, dtype=int), title="After relabelling")
    assert fig.axes[0].get_title() == "After relabelling"


def test_confusion_writes_valid_png_of_figure_size(tmp_path):
    path = tmp_path / "confusion.png"
    fig = plot_confusion_matrix(np.eye(3, dtype=int), path=path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    width, height = fig.get_size_inches() * fig.dpi
    assert matplotlib.image.imread(path).shape[:2] == (round(height), round(width))


@pytest.mark.parametrize("shape", [(2, 3), (3,), (2, 2, 2), (0, 0)])
def test_confusion_non_square_matrix_raises(shape):
    with pytest.raises(ValueError, match=r"`matrix` to be square.*matrix.shape="):
        plot_confusion_matrix(np.zeros(shape))


def test_confusion_negative_entries_raise():
    with pytest.raises(ValueError, match="`matrix` to be non-negative"):
        plot_confusion_matrix(np.array([[1, -1], [0, 2]]))


def test_confusion_non_finite_entries_raise():
    with pytest.raises(ValueError, match="`matrix` to be finite"):
        plot_confusion_matrix(np.array([[1.0, np.nan], [0.0, 2.0]]))


def test_confusion_non_numeric_matrix_raises_type_error():
    with pytest.raises(TypeError, match="`matrix`"):
        plot_confusion_matrix(np.array([["a", "b"], ["c", "d"]]))


def test_confusion_class_names_of_wrong_length_raises():
    with pytest.raises(ValueError, match=r"`class_names`.*\(3 names\).*len\(class_names\)=2"):
        plot_confusion_matrix(np.eye(3, dtype=int), class_names=["cat", "dog"])


def test_confusion_normalize_not_bool_raises_type_error():
    with pytest.raises(TypeError, match="`normalize`"):
        plot_confusion_matrix(np.eye(2, dtype=int), normalize="yes")


def test_confusion_path_in_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder of `path`"):
        plot_confusion_matrix(np.eye(2, dtype=int), path=tmp_path / "missing" / "c.png")
