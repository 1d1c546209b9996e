"""Confident learning: find the examples whose label the data itself disputes.

Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021. From out-of-sample predicted probabilities
`p(y~ = j | x)`, the per-class thresholds `t_j` (the mean predicted
probability of class `j` over the examples labelled `j`) count the confident
joint `C[i][j]`: examples labelled `i` whose probability of `j` clears `t_j`.
The off-diagonal counts estimate how many labels of each kind are wrong, and
"prune by noise rate" removes that many examples per pair, those with the
largest margin `p(j|x) - p(i|x)`.

cleanlab implements all of it (`cleanlab.filter.find_label_issues`); this
module computes the out-of-sample probabilities the method needs, by K-fold
training of the user's own model (scikit-learn's `StratifiedKFold`), and
turns cleanlab's answer into a `DetectionReport` whose suggested labels (the
most probable class) can relabel what it flags.
"""

import keras
import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.model_selection import StratifiedKFold

from keras_poison._validation import check_probabilities
from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_int
from keras_poison._validation import validate_model_builder
from keras_poison.defences.detectors.report import DetectionReport

_FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)


class LabelIssueDetector:
    """Flags examples whose given label confident learning finds wrong.

    Either give the out-of-sample probabilities (`detect(x, y,
    pred_probs=...)`), or a `build_model` function, and the detector trains
    `num_folds` fresh models, each on all folds but one, and predicts the
    held-out fold, so no example is scored by a model that saw its label.

    Scores are `1 - p(given label | x)` (cleanlab's self-confidence), so
    they rank even the examples cleanlab does not flag. The suggested label
    is the most probable class.

    The method is only as good as the classifier behind the probabilities.
    With LeNet-5 on MNIST (96%) it finds random flips at F1 0.93; with a
    VGG-like CNN on 4,660 CIFAR-10 images (65%) it flags a third of a clean
    set (docs/benchmarks.md §7). With a weak classifier, act only where it
    agrees with another detector (`consensus(report, KNNDetector(...)
    .detect(x, y))`).

    Known adaptive failure: flips to the runner-up class where a model is
    least sure (`EvasiveFlip.least_confident`) are what confident learning
    forgives most: on MNIST 5k at 20% flips its F1 fell from 0.93 (random
    flips) to 0.54, and to 0.52 against neighbour-plurality flips, the
    weakest of the three label detectors measured. Flagging the defender's
    budget (`report.with_flagged(report.top(k))`, or `rank_average(...,
    num_flagged=k)` with the other detectors) brings F1 back to 0.87
    (docs/benchmarks.md §16).

    Args:
        build_model: `None`, or a function of no arguments that returns a
            fresh compiled `keras.Model` whose outputs are class
            probabilities (softmax). Needed unless `pred_probs` are passed
            to `detect`. Defaults to `None`.
        num_folds: int >= 2, the number of cross-validation folds.
            Defaults to `5`.
        epochs: int >= 1, training epochs per fold. Defaults to `10`.
        batch_size: int >= 1, training and prediction batch size.
            Defaults to `64`.
        filter_by: str, cleanlab's `filter_by` rule. Defaults to
            `"prune_by_noise_rate"`.
        seed: int, seed of the folds and of each fold's model.
            Defaults to `0`.
        fit_kwargs: dict or `None`, extra arguments to each `model.fit`
            (e.g. `callbacks`). Defaults to `None`.
        verbose: int, Keras `fit` verbosity. Defaults to `0`.

    Example:

    >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> probs = np.array([[.9, .1], [.8, .2], [.9, .1], [.1, .9],
    ...                   [.2, .8], [.1, .9], [.3, .7], [.1, .9]])
    >>> report = LabelIssueDetector().detect(None, labels, pred_probs=probs)
    >>> report.flagged_indices.tolist(), int(report.suggested_labels[3])
    ([3], 1)
    """

    name = "label_issues"

    def __init__(
        self,
        build_model=None,
        num_folds=5,
        epochs=10,
        batch_size=64,
        filter_by="prune_by_noise_rate",
        seed=0,
        fit_kwargs=None,
        verbose=0,
    ):
        self.build_model = validate_model_builder(build_model)
        self.num_folds = validate_int("num_folds", num_folds, 2)
        self.epochs = validate_int("epochs", epochs, 1)
        self.batch_size = validate_int("batch_size", batch_size, 1)
        if filter_by not in _FILTERS:
            raise ValueError(f"Expected `filter_by` in {_FILTERS}. Received: filter_by={filter_by!r}")
        self.filter_by = filter_by
        self.seed = validate_int("seed", seed, 0)
        self.fit_kwargs = dict(fit_kwargs or {})
        self.verbose = verbose

    def out_of_sample_probabilities(self, x, y):
        """Predicted probabilities of each example by a model that never saw it.

        Args:
            x: images `(n, ...)`.
            y: labels, sparse or one-hot, passed to `fit` as given.

        Returns:
            float array `(n, num_classes)`.
        """
        if self.build_model is None:
            raise ValueError(
                "Expected `build_model` to train the K-fold models, or "
                "`pred_probs=` given to `detect`. Received: build_model=None"
            )
        labels, _ = to_class_indices(y, "y")
        x = np.asarray(x)
        y = np.asarray(y)
        if len(x) != len(labels):
            raise ValueError(
                f"Expected one label per image. Received: {len(x)} images and {len(labels)} labels"
            )
        if np.bincount(labels).max(initial=0) < self.num_folds:
            raise ValueError(
                f"Expected a class with at least `num_folds`={self.num_folds} examples "
                f"to split into folds. Received: class counts {np.bincount(labels).tolist()}"
            )
        folds = StratifiedKFold(self.num_folds, shuffle=True, random_state=self.seed)
        probabilities = None
        for fold, (train, held_out) in enumerate(folds.split(np.zeros(len(labels)), labels)):
            keras.utils.set_random_seed(self.seed + fold)
            model = self.build_model()
            model.fit(
                x[train],
                y[train],
                epochs=self.epochs,
                batch_size=self.batch_size,
                verbose=self.verbose,
                **self.fit_kwargs,
            )
            predicted = np.asarray(model.predict(x[held_out], batch_size=self.batch_size, verbose=0))
            if probabilities is None:
                probabilities = np.zeros((len(labels), predicted.shape[-1]), np.float64)
            probabilities[held_out] = predicted.reshape(len(held_out), -1)
            keras.backend.clear_session(free_memory=True)
        return _checked_probabilities(probabilities, labels, "the K-fold models' outputs")

    def detect(self, x, y, pred_probs=None):
        """Finds the label issues of `(x, y)`.

        Args:
            x: images `(n, ...)`; ignored when `pred_probs` is given.
            y: labels, sparse `(n,)` or one-hot `(n, num_classes)`.
            pred_probs: `None`, or out-of-sample probabilities
                `(n, num_classes)` whose rows sum to 1.

        Returns:
            A `DetectionReport` with suggested labels.
        """
        labels, _ = to_class_indices(y, "y")
        if pred_probs is None:
            probabilities = self.out_of_sample_probabilities(x, y)
        else:
            probabilities = _checked_probabilities(pred_probs, labels, "pred_probs")
        flagged = find_label_issues(labels, probabilities, filter_by=self.filter_by, n_jobs=1)
        quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
        details = self.get_config()
        details["num_classes"] = int(probabilities.shape[1])
        return DetectionReport(
            1.0 - quality,
            flagged,
            suggested_labels=np.argmax(probabilities, axis=1),
            given_labels=labels,
            detector=self.name,
            details=details,
        )

    def get_config(self):
        return {
            "num_folds": self.num_folds,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "filter_by": self.filter_by,
            "seed": self.seed,
        }


def _checked_probabilities(value, labels, name):
    probabilities = np.asarray(value, np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(
            f"Expected `{name}` of shape ({len(labels)}, num_classes), one row per label. "
            f"Received: shape {probabilities.shape}"
        )
    width = probabilities.shape[1]
    if width < 2 or labels.max(initial=0) >= width:
        raise ValueError(
            f"Expected `{name}` with a column for every class (labels go up to "
            f"{int(labels.max(initial=0))}). Received: {width} columns"
        )
    check_probabilities(probabilities, name)
    return probabilities / probabilities.sum(axis=1)[:, None]
