"""Detecting class-wise clean-label patterns (seed report 000, §3.2).

The attack adds one fixed pattern to every image of a class. Averaged over
the class, natural content blurs out while the pattern stays, so the class
means carry fine detail that clean class means lack. `ClassPatternRemoval`
already estimates that detail per class, with its signal-to-noise ratio
(about 1–2 on clean CIFAR-10, 10 and more under an 8/255 pattern); this
detector flags the classes whose ratio clears a threshold, and within them
the images whose own fine detail correlates with the class's pattern.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import validate_number
from keras_poison.defences.detectors.report import DetectionReport
from keras_poison.defences.pattern_removal import ClassPatternRemoval

# An image unrelated to a pattern of d values correlates with it at about
# N(0, 1/d); four standard deviations keep false alarms rare.
_CORRELATION_SIGMAS = 4.0
_BATCH = 512


class ClassPatternDetector:
    """Flags classes whose images share an additive pattern, and estimates it.

    A class is flagged when the `signal_to_noise` of its estimated pattern
    (see `ClassPatternRemoval`) exceeds `snr_threshold`. An example's score
    is the correlation (cosine) between its high-pass residual and its
    class's estimated pattern; in a flagged class it is flagged when that
    correlation exceeds four standard deviations of chance, `4 / sqrt(d)`
    for images of `d` values.

    The ratio grows with the number of images per class for any fixed
    pattern; the default threshold was set on the CIFAR-10 subset (about 470
    images per class, clean ratios 1.0–1.9). With many more images per
    class, natural detail of the class means raises clean ratios too: check
    `details["signal_to_noise"]` on data you trust and raise the threshold.

    Args:
        num_classes: int >= 2.
        snr_threshold: float > 1, the signal-to-noise ratio above which a
            class is flagged. Defaults to `3.0`.
        kernel_size: odd int >= 3, the box blur of the high-pass filter.
            Defaults to `3`.
        value_range: `(low, high)` of the images, or `None` for the dtype's
            default. Defaults to `None`.

    Attributes:
        patterns: after `detect`, the estimated patterns
            `(num_classes, *image_shape)` (zero for unflagged classes).
        flagged_classes: after `detect`, the flagged class indices.
        removal: the fitted `ClassPatternRemoval`, ready to apply.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> colours = rng.uniform(0.2, 0.8, (400, 1, 1, 3))
    >>> x = np.broadcast_to(colours, (400, 8, 8, 3)).astype("float32")  # smooth
    >>> y = np.arange(400) % 4
    >>> attack = keras_poison.ClassPatternNoise(4, epsilon=0.05, seed=0)
    >>> x_poisoned, _, mask = attack.poison(x, y)
    >>> detector = ClassPatternDetector(num_classes=4)
    >>> report = detector.detect(x_poisoned, y)
    >>> detector.flagged_classes.tolist(), report.evaluate(mask).recall
    ([0, 1, 2, 3], 1.0)
    """

    name = "class_pattern"

    def __init__(self, num_classes, snr_threshold=3.0, kernel_size=3, value_range=None):
        self.removal = ClassPatternRemoval(num_classes, kernel_size, value_range, shrink=True)
        self.num_classes = self.removal.num_classes
        self.snr_threshold = validate_number("snr_threshold", snr_threshold, 1, low_open=True)
        self.patterns = None
        self.flagged_classes = None

    def detect(self, x, y, reference=None):
        """Estimates the class patterns of `(x, y)` and scores every example.

        Args:
            x: images `(n, H, W[, C])`.
            y: labels, sparse or one-hot.
            reference: `None`, or a small trusted clean set `(x_ref, y_ref)`
                with every class. Needed for aligned images such as digits,
                whose clean class means carry fine detail of their own (on
                the packaged MNIST digits, without one, every class is
                flagged). Defaults to `None`.

        Returns:
            A `DetectionReport`; `details` holds the per-class
            `signal_to_noise` and the `flagged_classes`.
        """
        x = np.asarray(x)
        self.removal.fit(x, y, reference=reference)
        labels = self.removal._class_indices(x, y)
        is_flagged_class = self.removal.signal_to_noise > self.snr_threshold
        patterns = self.removal.patterns * is_flagged_class[
            (slice(None),) + (None,) * (self.removal.patterns.ndim - 1)
        ]
        self.patterns = patterns
        self.flagged_classes = np.flatnonzero(is_flagged_class)

        flat_patterns = patterns.reshape(self.num_classes, -1)
        pattern_norms = np.linalg.norm(flat_patterns, axis=1)
        # What an image is compared with: its fine detail, or, against a
        # trusted reference, its difference from the trusted class mean.
        if reference is None:
            offsets = None
        else:
            ref_x, ref_y = reference
            ref_labels = self.removal._class_indices(np.asarray(ref_x), ref_y)
            ref_flat = np.asarray(ref_x, np.float64).reshape(len(ref_labels), -1)
            sums = np.zeros((self.num_classes, ref_flat.shape[1]))
            np.add.at(sums, ref_labels, ref_flat)
            offsets = sums / np.maximum(np.bincount(ref_labels, minlength=self.num_classes), 1)[:, None]
        scores = np.zeros(len(x))
        for start in range(0, len(x), _BATCH):
            batch_labels = labels[start : start + _BATCH]
            if offsets is None:
                images = tf.cast(tf.convert_to_tensor(x[start : start + _BATCH]), tf.float32)
                residuals = self.removal._residual(self.removal._as_nhwc(images)).numpy()
                residuals = residuals.reshape(len(residuals), -1)
            else:
                residuals = x[start : start + _BATCH].reshape(len(batch_labels), -1) - offsets[batch_labels]
            dots = np.einsum("nd,nd->n", residuals, flat_patterns[batch_labels])
            norms = np.linalg.norm(residuals, axis=1) * pattern_norms[batch_labels]
            scores[start : start + _BATCH] = np.where(norms > 0, dots / np.maximum(norms, 1e-30), 0.0)
        cutoff = _CORRELATION_SIGMAS / np.sqrt(flat_patterns.shape[1])
        flagged = is_flagged_class[labels] & (scores > cutoff)
        details = self.get_config()
        details.update(
            signal_to_noise=[float(v) for v in self.removal.signal_to_noise],
            flagged_classes=[int(c) for c in self.flagged_classes],
            correlation_cutoff=float(cutoff),
        )
        return DetectionReport(scores, flagged, given_labels=labels, detector=self.name, details=details)

    def get_config(self):
        config = self.removal.get_config()
        config.pop("shrink")
        config["snr_threshold"] = self.snr_threshold
        return config
