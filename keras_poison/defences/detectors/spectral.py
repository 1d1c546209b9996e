"""Spectral signatures (Tran, Li and Madry, NeurIPS 2018).

Poisoned examples of a class leave a trace in the covariance of the class's
learned representations: projected on the top singular vector of the
centred features, they stand out. Algorithm 1 of the paper, per class `c`
with features `R_c` (one row per example):

    R_hat = R_c - mean(R_c)
    v     = top right singular vector of R_hat
    tau_i = ((R_i - mean(R_c)) . v)^2               (the outlier score)

and the `1.5 * epsilon * n_c` examples with the largest scores are removed,
`epsilon` being an upper bound on the poisoned fraction.
"""

import numpy as np

from keras_poison._validation import validate_number
from keras_poison.defences.detectors._base import FeatureSpaceDetector
from keras_poison.defences.detectors._base import one_thread_per_class_problem
from keras_poison.defences.detectors.report import DetectionReport


class SpectralSignatureDetector(FeatureSpaceDetector):
    """Flags each class's outliers along its top singular direction.

    Scores are Tran et al.'s `tau_i` divided by their class mean (which is
    the top singular value squared over `n_c`), so they compare across
    classes: a score of 5 is five times the class's typical projection.
    In each class the `round(removal_factor * expected_poison_rate * n_c)`
    highest scores are flagged (Algorithm 1, step 6).

    Works with any functional or Sequential model, or with precomputed
    `features=`.

    Known adaptive failure: label flips that follow the data
    (`EvasiveFlip`) are no outliers along the top singular direction: on
    MNIST 5k at 20% flips its F1 fell from 0.67 (random flips) to 0.35–0.37
    (3 seeds, docs/benchmarks.md §16).

    Args:
        model: a `keras.Model` trained on the data under suspicion, or
            `None` to always pass `features=`. Defaults to `None`.
        expected_poison_rate: float in (0, 1), `epsilon`, an upper bound
            on the fraction of poisoned examples. Defaults to `0.1`.
        removal_factor: float > 0, how many times `epsilon * n_c` examples
            are flagged per class; the paper uses 1.5. Defaults to `1.5`.
        layer: which layer's output to read; `None` reads the penultimate
            representation. Defaults to `None`.
        batch_size: int, batch size of the feature pass. Defaults to `256`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(200, 8)).astype("float32")
    >>> features[:10, 0] += 8.0  # ten outliers of class 0
    >>> labels = np.zeros(200, int)
    >>> report = SpectralSignatureDetector(expected_poison_rate=0.05,
    ...     removal_factor=1.0).detect(None, labels, features=features)
    >>> sorted(report.flagged_indices.tolist()) == list(range(10))
    True
    """

    name = "spectral_signature"

    def __init__(
        self,
        model=None,
        expected_poison_rate=0.1,
        removal_factor=1.5,
        layer=None,
        batch_size=256,
    ):
        super().__init__(model, layer, batch_size)
        self.expected_poison_rate = validate_number(
            "expected_poison_rate", expected_poison_rate, 0, 1, low_open=True, high_open=True
        )
        self.removal_factor = validate_number("removal_factor", removal_factor, 0, low_open=True)

    @one_thread_per_class_problem
    def detect(self, x, y, features=None):
        """Scores every example of `(x, y)`.

        Args:
            x: images the model takes (ignored when `features` is given).
            y: labels, sparse `(n,)` or one-hot `(n, num_classes)`.
            features: optional `(n, ...)` features to use instead of the
                model's.

        Returns:
            A `DetectionReport`.
        """
        features, labels = self.features_and_labels(x, y, features)
        scores = np.zeros(len(labels))
        flagged = np.zeros(len(labels), bool)
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            centred = features[members] - features[members].mean(axis=0)
            if len(members) < 2 or not np.any(centred):
                continue
            # The top right singular vector of the centred class features.
            _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
            tau = (centred @ vt[0]) ** 2
            scores[members] = tau / max(tau.mean(), np.finfo(float).tiny)
            count = int(round(self.removal_factor * self.expected_poison_rate * len(members)))
            flagged[members[np.argsort(-tau, kind="stable")[:count]]] = True
        return DetectionReport(
            scores,
            flagged,
            given_labels=labels,
            detector=self.name,
            details=self.get_config(),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            expected_poison_rate=self.expected_poison_rate,
            removal_factor=self.removal_factor,
        )
        return config
