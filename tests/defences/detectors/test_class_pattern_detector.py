"""ClassPatternDetector: flags the classes that share an additive pattern."""

import numpy as np
import pytest

from keras_poison import ClassPatternDetector
from keras_poison import ClassPatternNoise
from tests.defences.test_pattern_removal import natural_like_images


@pytest.fixture(scope="module")
def smooth_images():
    return natural_like_images(n=1200, size=16)


def test_every_patterned_class_is_flagged_and_the_pattern_estimated(smooth_images):
    x, y = smooth_images
    attack = ClassPatternNoise(4, epsilon=24 / 255, seed=0)
    x_p, _, mask = attack.poison(x, y)
    detector = ClassPatternDetector(4)
    report = detector.detect(x_p, y)
    assert detector.flagged_classes.tolist() == list(range(4))
    assert report.evaluate(mask).recall > 0.95
    # The estimate points the way of the true pattern's fine detail.
    true_pattern = (x_p - x)[y == 2].mean(axis=0).ravel()
    estimate = detector.patterns[2].ravel()
    cosine = true_pattern @ estimate / np.linalg.norm(true_pattern) / np.linalg.norm(estimate)
    assert cosine > 0.5


def test_clean_classes_are_not_flagged(smooth_images):
    x, y = smooth_images
    detector = ClassPatternDetector(4)
    report = detector.detect(x, y)
    assert detector.flagged_classes.tolist() == []
    assert report.flagged.sum() == 0


def test_half_poisoned_class_flags_its_poisoned_images(smooth_images):
    x, y = smooth_images
    x_p, _, mask = ClassPatternNoise(4, epsilon=16 / 255, seed=1, fraction=0.5).poison(x, y)
    metrics = ClassPatternDetector(4).detect(x_p, y).evaluate(mask)
    assert metrics.auroc > 0.95
    assert metrics.precision > 0.9


def test_snr_threshold_must_exceed_one():
    with pytest.raises(ValueError, match=r"`snr_threshold` in \(1, inf\]"):
        ClassPatternDetector(4, snr_threshold=0.5)


def test_labels_out_of_range_are_rejected(smooth_images):
    x, y = smooth_images
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        ClassPatternDetector(3).detect(x, y)


def test_aligned_digits_need_a_trusted_reference():
    from keras_poison import datasets

    (x, y), _ = datasets.load("mnist5k")
    x = x.astype("float32") / 255.0
    clean, trusted = slice(0, 3000), slice(3000, 4000)
    # Most of a digit is black background, where half the pattern is clipped
    # away; a larger budget than on photographs is needed to stand out.
    x_p, _, mask = ClassPatternNoise(10, epsilon=48 / 255, seed=0).poison(x[clean], y[clean])
    # Alone, the sharp class means of aligned digits look like patterns...
    assert len(ClassPatternDetector(10).detect(x[clean], y[clean]).details["flagged_classes"]) > 5
    # ... against trusted digits, clean classes pass and patterned ones stand out.
    reference = (x[trusted], y[trusted])
    assert ClassPatternDetector(10).detect(x[clean], y[clean], reference=reference).flagged.sum() == 0
    detector = ClassPatternDetector(10)
    metrics = detector.detect(x_p, y[clean], reference=reference).evaluate(mask)
    assert len(detector.flagged_classes) >= 5
    assert metrics.precision == 1.0 and metrics.recall > 0.4
