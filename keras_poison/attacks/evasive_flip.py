"""Label flips placed where label-noise detectors look last (issue 20).

An adaptive counterpart of `RandomFlip`: an attacker who knows that the
victim cleans its labels with a detector (`AUMDetector`, `KNNDetector`,
confident learning in `LabelIssueDetector`) flips the labels those
detectors find least suspicious. All three score a label by how well the
rest of the data supports it: a model's confidence in it (AUM, confident
learning) or its agreement with the example's neighbours (kNN). A flip to
the class the data already half-supports scores like a clean label.
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_int
from keras_poison._validation import validate_num_classes
from keras_poison._validation import validate_rate
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import PoisoningAttack
from keras_poison.attacks.base import register


@register
class EvasiveFlip(PoisoningAttack):
    """Flips the labels that a label-noise detector is least likely to flag.

    Each of the `n` training examples has an evasiveness `scores[i]` and a
    wrong label `targets[i]`; exactly `round(rate * n)` examples with the
    highest scores get their target label (ties broken by a keyed draw, so
    `seed` matters only among equal scores). Images are untouched.

    Threat model: the attacker knows the clean training set and a model of
    it, a surrogate's predicted probabilities or a feature extractor, and
    knows the victim filters labels with a detector before training. Build
    the attack with one of:

    * `EvasiveFlip.least_confident(probabilities, y, rate)`: flips the
      examples the surrogate is least sure of to its runner-up class
      (score: runner-up probability minus true-class probability). Aimed at
      margin and confidence detectors (`AUMDetector`, `LabelIssueDetector`):
      the flipped label is one the model already gives weight to.
    * `EvasiveFlip.neighbour_disagreement(features, y, rate, k)`: flips the
      examples whose `k` nearest neighbours in feature space most often
      carry another label, to that label (score: its share of the
      neighbours minus the share of the example's own label). Aimed at
      `KNNDetector`: a flip with a score >= 0 gets a label that is a
      plurality of its neighbours, which the kNN vote passes.

    Known limit: the flips that pass outright are those with a score >= 0
    (the data already prefers another label); how many there are is a
    property of the data set and the surrogate (27 of 1437 digits, 1.9%,
    with pixel features and `k=10`). Flips beyond them are detected less
    often than random ones, not never; and they still rank high, so a
    detector that flags as many examples as the defender's assumed budget
    finds most of them (docs/benchmarks.md §16).

    The plan belongs to one data set in one order: the labels it was made
    for are kept, and poisoning examples whose labels differ (another data
    set, or one shuffled before the attack) is an error, never a silent
    different flip.

    Args:
        labels: the clean labels `(n,)` (sparse, a column or one-hot) of
            the data set the plan was made for, in stream order.
        targets: int array `(n,)`, the wrong label each example would get;
            `targets[i] != labels[i]`.
        scores: float array `(n,)`, how evasive each flip is; the highest
            are flipped first.
        rate: float in [0, 1], the fraction of examples flipped.
        num_classes: int >= 2, the number of classes.
        seed: int, the key of the tie-break among equal scores.
            Defaults to `0`.

    Example:

    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> probabilities = np.array([[.9, .1], [.55, .45], [.8, .2],
    ...                           [.3, .7], [.6, .4], [.1, .9]])
    >>> attack = EvasiveFlip.least_confident(probabilities, y, rate=1 / 3)
    >>> x_p, y_p, mask = attack.poison(np.zeros((6, 2, 2, 1), "float32"), y)
    >>> np.flatnonzero(mask).tolist(), y_p.tolist()  # the two least confident
    ([1, 4], [0, 1, 0, 1, 0, 1])
    """

    def __init__(self, labels, targets, scores, rate, num_classes, *, seed=0):
        super().__init__(seed=seed, num_classes=validate_num_classes(num_classes))
        self.rate = validate_rate("rate", rate)
        labels, _ = to_class_indices(labels, "labels")
        targets, _ = to_class_indices(targets, "targets")
        scores = np.asarray(scores, dtype="float64")
        n = len(labels)
        if targets.shape != (n,) or scores.shape != (n,):
            raise ValueError(
                "Expected `labels`, `targets` and `scores` to have one entry per "
                f"example. Received: {n} labels, targets.shape={targets.shape}, "
                f"scores.shape={scores.shape}"
            )
        if not np.all(np.isfinite(scores)):
            raise ValueError("Expected finite `scores`. Received: NaN or infinite scores.")
        for name, values in (("labels", labels), ("targets", targets)):
            if values.size and values.max() >= self.num_classes:
                raise ValueError(
                    f"Expected `{name}` in [0, {self.num_classes}) "
                    f"(num_classes={self.num_classes}). Received: {int(values.max())}"
                )
        same = np.flatnonzero(targets == labels)
        if same.size:
            raise ValueError(
                "Expected every target to differ from the example's label. "
                f"Received: targets[{int(same[0])}] == labels[{int(same[0])}] == "
                f"{int(labels[same[0]])}"
            )
        self.labels = labels
        self.targets = targets
        self.scores = scores
        count = keyed_random.selection_count(self.rate, n)
        tie_break = keyed_random.uniform_float(
            tf.range(n, dtype=tf.int64), self.seed, keyed_random.SELECTION_STREAM
        ).numpy()
        # np.lexsort sorts by the last key first: score descending, then the draw.
        order = np.lexsort((tie_break, -scores))
        self.flipped = np.zeros(n, bool)
        self.flipped[order[:count]] = True
        with tf.init_scope():
            self._new_label = tf.constant(np.where(self.flipped, targets, -1).astype("int32"))
            self._expected = tf.constant(labels.astype("int32"))

    # ------------------------------------------------------------ builders

    @classmethod
    def least_confident(cls, probabilities, y, rate, *, seed=0):
        """Flips the examples a surrogate model is least sure of.

        Args:
            probabilities: float array `(n, num_classes)`, a surrogate's
                predicted class probabilities for the training examples
                (out-of-sample ones, e.g. from cross-validation, are what a
                detector sees; in-sample ones from an overfitted model are
                all near 1 and rank poorly).
            y: the clean labels `(n,)` (sparse, a column or one-hot).
            rate: float in [0, 1], the fraction flipped.
            seed: int, the tie-break key. Defaults to `0`.

        Returns:
            An `EvasiveFlip` with `targets` the runner-up class and
            `scores` its probability minus the true class's.
        """
        probabilities = np.asarray(probabilities, dtype="float64")
        labels, _ = to_class_indices(y, "y")
        if probabilities.ndim != 2 or len(probabilities) != len(labels):
            raise ValueError(
                "Expected `probabilities` of shape (n, num_classes) with one row "
                f"per label. Received: probabilities.shape={probabilities.shape}, "
                f"{len(labels)} labels"
            )
        num_classes = probabilities.shape[1]
        if num_classes < 2:
            raise ValueError(
                "Expected `probabilities` with >= 2 classes. Received: "
                f"probabilities.shape={probabilities.shape}"
            )
        if labels.size and labels.max() >= num_classes:
            raise ValueError(
                f"Expected labels in [0, {num_classes}) (the probabilities' width). "
                f"Received: {int(labels.max())}"
            )
        if not np.all(np.isfinite(probabilities)):
            raise ValueError(
                "Expected finite `probabilities`. Received: NaN or infinite values."
            )
        rows = np.arange(len(labels))
        own = probabilities[rows, labels]
        others = probabilities.copy()
        others[rows, labels] = -np.inf
        targets = np.argmax(others, axis=1)
        scores = others[rows, targets] - own
        return cls(labels, targets, scores, rate, num_classes, seed=seed)

    @classmethod
    def neighbour_disagreement(cls, features, y, rate, *, k=10, num_classes=None, seed=0):
        """Flips the examples whose feature-space neighbours carry another label.

        Args:
            features: float array `(n, d)` (or `(n, ...)`, flattened), the
                training examples in a feature space, e.g. a surrogate's
                penultimate layer (`keras_poison.defences.detectors` reads
                the same features for `KNNDetector`).
            y: the clean labels `(n,)` (sparse, a column or one-hot).
            rate: float in [0, 1], the fraction flipped.
            k: int >= 1, the number of neighbours, excluding the example
                itself. Defaults to `10`.
            num_classes: int >= 2 or `None` (then one more than the largest
                label, or the one-hot width). Defaults to `None`.
            seed: int, the tie-break key (the shares of `k` neighbours tie
                often). Defaults to `0`.

        Returns:
            An `EvasiveFlip` with `targets` the most common other label
            among the neighbours and `scores` its share of them minus the
            share of the example's own label.
        """
        from sklearn.neighbors import NearestNeighbors  # exact kNN, as KNNDetector

        labels, width = to_class_indices(y, "y")
        features = np.asarray(features, dtype="float64")
        n = len(labels)
        if features.ndim < 2 or len(features) != n:
            raise ValueError(
                "Expected `features` of shape (n, d) with one row per label. "
                f"Received: features.shape={features.shape}, {n} labels"
            )
        features = features.reshape(n, -1)
        k = validate_int("k", k, 1)
        if k >= n:
            raise ValueError(
                f"Expected `k` < the number of examples ({n}). Received: k={k}"
            )
        if num_classes is None:
            num_classes = width if width is not None else int(labels.max()) + 1
        num_classes = validate_num_classes(num_classes)
        if labels.size and labels.max() >= num_classes:
            raise ValueError(
                f"Expected `y` in [0, {num_classes}) (num_classes={num_classes}). "
                f"Received: a label {int(labels.max())}"
            )
        # One extra neighbour so the example itself can be left out, even
        # when duplicates make it not the first one returned.
        _, nearest = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
        counts = np.zeros((n, num_classes))
        for i in range(n):
            neighbours = nearest[i][nearest[i] != i][:k]
            np.add.at(counts[i], labels[neighbours], 1.0)
        rows = np.arange(n)
        own = counts[rows, labels].copy()
        counts[rows, labels] = -1.0  # never the example's own label
        targets = np.argmax(counts, axis=1)
        # >= 0: the new label is a plurality of the neighbours, which a kNN
        # vote then passes.
        scores = (counts[rows, targets] - own) / k
        return cls(labels, targets, scores, rate, num_classes, seed=seed)

    # ------------------------------------------------------------ the attack

    def _check_size(self, num_examples):
        if num_examples != len(self.labels):
            raise ValueError(
                f"EvasiveFlip was made for a data set of {len(self.labels)} "
                f"examples. Received: {num_examples} examples"
            )

    def _example_plan(self, index, num_examples):
        n = len(self.labels)
        in_range = tf.debugging.Assert(
            tf.reduce_all(index < n),
            [f"EvasiveFlip was made for a data set of {n} examples; the stream has more."],
        )
        with tf.control_dependencies([in_range]):
            index = tf.identity(index)
        return tf.gather(self._new_label, index), tf.gather(self._expected, index)

    def _poison_examples(self, x, labels, plan):
        new_label, expected = plan
        same_order = tf.debugging.Assert(
            tf.reduce_all(tf.equal(labels, expected)),
            [
                "EvasiveFlip: an example's label differs from the label the plan "
                "was made for. Apply the attack to the same data set, in the "
                "same order (before any shuffle)."
            ],
        )
        with tf.control_dependencies([same_order]):
            return None, tf.where(new_label >= 0, new_label, labels)

    def poison(self, x, y):
        labels, _ = to_class_indices(y, "y")
        if labels.shape == self.labels.shape and not np.array_equal(labels, self.labels):
            first = int(np.flatnonzero(labels != self.labels)[0])
            raise ValueError(
                "EvasiveFlip: an example's label differs from the label the plan "
                f"was made for. Received: y[{first}] = {int(labels[first])}, the "
                f"plan's label {int(self.labels[first])}. Apply the attack to the "
                "same data set, in the same order."
            )
        return super().poison(x, y)

    poison.__doc__ = PoisoningAttack.poison.__doc__

    def get_config(self):
        return {
            "labels": self.labels.tolist(),
            "targets": self.targets.tolist(),
            "scores": self.scores.tolist(),
            "rate": self.rate,
            "num_classes": self.num_classes,
            "seed": self.seed,
        }
