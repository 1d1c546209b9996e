"""Activation clustering (Chen et al., "Detecting Backdoor Attacks on Deep
Neural Networks by Activation Clustering", SafeAI@AAAI 2019, arXiv 2018).

The last hidden layer's activations of one class are reduced to 10
dimensions with independent component analysis and split in two by k-means
(§4 of the paper). Clean classes split into two halves of similar size;
a class that holds poisoned examples splits into its clean majority and a
small cluster of the poison. Relative-size analysis (§4.2) flags the smaller
cluster when it holds at most `size_threshold` of the class (the paper and
ART use 0.35).
"""

import warnings

import numpy as np
from sklearn import cluster
from sklearn import decomposition
from sklearn import exceptions as sk_exceptions
from sklearn import metrics as sk_metrics

from keras_poison._validation import validate_int
from keras_poison._validation import validate_number
from keras_poison.defences.detectors._base import FeatureSpaceDetector
from keras_poison.defences.detectors._base import one_thread_per_class_problem
from keras_poison.defences.detectors.report import DetectionReport

_REDUCTIONS = ("ica", "pca")


class ActivationClusteringDetector(FeatureSpaceDetector):
    """Splits each class's activations in two and flags the small cluster.

    It finds one foreign cluster per class: poison from one source (a
    backdoor, flips from one class into another). Random label flips bring
    examples of every other class into each class, and it misses most of
    them (docs/benchmarks.md §7); use `LabelIssueDetector` or `KNNDetector`
    for those.

    Score of an example: `1 - relative size of its cluster`, plus half its
    normalized margin `(d_other - d_own) / (d_other + d_own)` between the
    two cluster centres. Members of small, well-separated clusters rank
    first; in a clean class the scores hover around 0.5.

    Known adaptive failure: flips to the label the neighbours already carry
    (`EvasiveFlip`) form no separate cluster: on MNIST 5k at 20% flips its
    F1 fell from 0.60 (random flips) to 0.18–0.24 (3 seeds,
    docs/benchmarks.md §16).

    Args:
        model: a `keras.Model` trained on the data under suspicion, or
            `None` to always pass `features=`. Defaults to `None`.
        num_components: int >= 1, dimensions kept by the reduction (the
            paper's 10). Defaults to `10`.
        reduction: `"ica"` (the paper, scikit-learn's FastICA) or `"pca"`.
            Defaults to `"ica"`.
        size_threshold: float in (0, 0.5], the largest relative size of a
            cluster that is flagged. Defaults to `0.35`.
        layer: which layer's output to read; `None` reads the penultimate
            representation. Defaults to `None`.
        batch_size: int, batch size of the feature pass. Defaults to `256`.
        seed: int, seed of the reduction and of k-means. Defaults to `0`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(300, 16)).astype("float32")
    >>> features[:30] += 6.0  # a small, separate cluster in class 0
    >>> report = ActivationClusteringDetector(num_components=4).detect(
    ...     None, np.zeros(300, int), features=features)
    >>> sorted(report.flagged_indices.tolist()) == list(range(30))
    True
    """

    name = "activation_clustering"

    def __init__(
        self,
        model=None,
        num_components=10,
        reduction="ica",
        size_threshold=0.35,
        layer=None,
        batch_size=256,
        seed=0,
    ):
        super().__init__(model, layer, batch_size)
        self.num_components = validate_int("num_components", num_components, 1)
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"Expected `reduction` in {_REDUCTIONS}. Received: reduction={reduction!r}"
            )
        self.reduction = reduction
        self.size_threshold = validate_number(
            "size_threshold", size_threshold, 0, 0.5, low_open=True
        )
        self.seed = validate_int("seed", seed, 0)

    @one_thread_per_class_problem
    def detect(self, x, y, features=None):
        """Scores every example of `(x, y)`; see `SpectralSignatureDetector.detect`."""
        features, labels = self.features_and_labels(x, y, features)
        scores = np.full(len(labels), 0.5)
        flagged = np.zeros(len(labels), bool)
        per_class = {}
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if len(members) < 4:
                continue
            reduced = self._reduce(features[members])
            kmeans = cluster.KMeans(n_clusters=2, n_init=10, random_state=self.seed)
            assignment = kmeans.fit_predict(reduced)
            sizes = np.bincount(assignment, minlength=2) / len(members)
            distances = kmeans.transform(reduced)
            own = distances[np.arange(len(members)), assignment]
            other = distances[np.arange(len(members)), 1 - assignment]
            margin = (other - own) / np.maximum(other + own, np.finfo(float).tiny)
            scores[members] = 1.0 - sizes[assignment] + 0.5 * margin
            small = int(np.argmin(sizes))
            is_poisoned = sizes[small] <= self.size_threshold
            if is_poisoned:
                flagged[members[assignment == small]] = True
            per_class[int(c)] = {
                "smaller_cluster_size": float(sizes[small]),
                "silhouette": _silhouette(reduced, assignment, self.seed),
                "flagged": bool(is_poisoned),
            }
        details = self.get_config()
        details["classes"] = per_class
        return DetectionReport(
            scores, flagged, given_labels=labels, detector=self.name, details=details
        )

    def _reduce(self, features):
        components = min(self.num_components, features.shape[1], len(features) - 1)
        centred = features - features.mean(axis=0)
        if self.reduction == "pca":
            return decomposition.PCA(components, random_state=self.seed).fit_transform(centred)
        with warnings.catch_warnings():
            # FastICA warns when it stops at max_iter; the components are
            # still a usable projection for 2-means.
            warnings.simplefilter("ignore", sk_exceptions.ConvergenceWarning)
            ica = decomposition.FastICA(
                components, whiten="unit-variance", max_iter=400, random_state=self.seed
            )
            return ica.fit_transform(centred)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_components=self.num_components,
            reduction=self.reduction,
            size_threshold=self.size_threshold,
            seed=self.seed,
        )
        return config


def _silhouette(points, assignment, seed):
    if len(np.unique(assignment)) < 2:
        return float("nan")
    sample = min(len(points), 2000)
    return float(
        sk_metrics.silhouette_score(points, assignment, sample_size=sample, random_state=seed)
    )
