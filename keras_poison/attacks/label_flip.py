"""Label-flipping attacks: random flips and targeted (class-pair) flips.

Seed report 000, §3.1: "20% of training labels are selected uniformly at
random and replaced with incorrect labels drawn from the remaining classes"
(random flipping), and "class pairs are determined based on the baseline
model's confusion matrix, pairing classes that were frequently
misclassified. Then, 20% of the training labels are systematically switched
to their corresponding paired class" (targeted flipping).
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_class
from keras_poison._validation import validate_num_classes
from keras_poison._validation import validate_rate
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import PoisoningAttack
from keras_poison.attacks.base import register
from keras_poison.attacks.poison_set import InjectPoisons
from keras_poison.attacks.poison_set import PoisonSet


@register
class RandomFlip(PoisoningAttack):
    """Replaces a fraction of labels with a uniformly drawn different class.

    Seed 000, §3.1 (random label flipping): exactly `round(rate * n)` of the
    `n` examples are chosen (a keyed permutation of the example indices), and
    each chosen label `y` becomes `(y + 1 + u) mod num_classes` with `u`
    uniform in `[0, num_classes - 1)`, i.e. a uniformly drawn *different*
    class. Images are untouched. When the size of a `tf.data` stream is
    unknown, each example is instead flipped with probability `rate`.

    Args:
        rate: float in [0, 1], the fraction of examples whose label is
            flipped (the seed's setting is `0.2`).
        num_classes: int >= 2, the number of classes.
        seed: int, the key of every random choice. Defaults to `0`.

    Example:

    >>> attack = RandomFlip(rate=0.2, num_classes=10, seed=1)
    >>> x = np.zeros((50, 4, 4, 3), "float32")
    >>> y = np.arange(50) % 10
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> int(mask.sum()), bool(np.all(y_p[mask] != y[mask]))
    (10, True)
    >>> train_ds = tf.data.Dataset.from_tensor_slices((x, y))
    >>> poisoned_ds = train_ds.apply(attack).shuffle(50).batch(8)
    """

    def __init__(self, rate, num_classes, *, seed=0):
        super().__init__(seed=seed, num_classes=validate_num_classes(num_classes))
        self.rate = validate_rate("rate", rate)

    def _example_plan(self, index, num_examples):
        # The shift to add to each label: 0 for untouched examples.
        selected = self._select(index, num_examples, self.rate)
        shift = 1 + keyed_random.uniform_int(
            index, self.seed, keyed_random.LABEL_STREAM, self.num_classes - 1
        )
        return tf.where(selected, shift, 0)

    def _poison_examples(self, x, labels, plan):
        return None, (labels + plan) % self.num_classes

    def get_config(self):
        return {"rate": self.rate, "num_classes": self.num_classes, "seed": self.seed}


@register
class TargetedFlip(PoisoningAttack):
    """Relabels chosen examples of source classes to their target classes.

    Seed 000, §3.1 (targeted label flipping): `mapping` sends each source
    class to a target class. Exactly `round(rate * n)` of the `n` examples
    are chosen with the same keyed permutation as `RandomFlip`; a chosen
    example whose class is a key of `mapping` gets the mapped label, the
    others are left alone. When `mapping` covers every class, as the seed's
    confusion-matrix pairing does (`from_confusion_matrix`), exactly
    `round(rate * n)` labels switch; for a partial mapping each source
    example is flipped with probability `rate`, and `poison` returns the
    exact mask.

    Label flips towards one class are mappings too: `to_class` relabels
    chosen examples of every other class to one target, `from_class` only
    those of one source class. They choose their own examples; the
    class-oriented paper's baselines (seed 003, §5: FL, FL-1, FL-2) relabel
    the very seeds a crafted attack used, which `relabel_seeds` does.

    Args:
        mapping: dict `{source_class: target_class}` of ints, with no class
            sent to itself.
        rate: float in [0, 1], the fraction of examples chosen.
            Defaults to `0.2`.
        seed: int, the key of every random choice. Defaults to `0`.
        num_classes: int >= 2 or `None`, the number of classes; when given,
            the mapping and the labels are checked against it. Defaults to
            `None`.

    Example:

    >>> attack = TargetedFlip({3: 5, 5: 3}, rate=0.5, seed=0, num_classes=10)
    >>> y = np.array([3, 5, 3, 5, 1, 1, 3, 5])
    >>> x_p, y_p, mask = attack.poison(np.zeros((8, 2)), y)
    >>> set(zip(y[mask], y_p[mask])) <= {(3, 5), (5, 3)}
    True
    >>> cm = np.array([[50, 9, 1], [7, 60, 2], [1, 3, 70]])
    >>> TargetedFlip.from_confusion_matrix(cm, rate=0.2).mapping
    {0: 1, 1: 0, 2: 1}
    """

    def __init__(self, mapping, rate=0.2, *, seed=0, num_classes=None):
        super().__init__(seed=seed, num_classes=num_classes)
        self.mapping = _validate_mapping(mapping, self.num_classes)
        self.rate = validate_rate("rate", rate)
        size = max(max(self.mapping), max(self.mapping.values())) + 1
        # target_table[c] is c's target, or c itself when c is not a source.
        self._target_table = np.arange(size, dtype=np.int32)
        for source, target in self.mapping.items():
            self._target_table[source] = target

    @classmethod
    def from_confusion_matrix(cls, confusion_matrix, rate=0.2, *, seed=0):
        """Pairs the most-confused classes of a model (seed 000, §3.1).

        The seed pairs "classes that were frequently misclassified" and
        switches labels within each pair. The pairs are the exact
        maximum-weight matching (`confused_class_pairs`) on
        `W = confusion_matrix + confusion_matrix.T` off the diagonal (how
        often two classes are mistaken for each other, both ways): among
        the pairings that pair every class (all but one when the number of
        classes is odd), the one in which the pairs are confused most in
        total. A greedy pairing is not enough: taking the single most
        confused pair first can force the remaining classes into pairs that
        are barely confused. Each pair is flipped both ways.

        * Classes never confused with anything (zero weight) are still
          paired, with whichever class the matching leaves them, so the
          mapping covers every class and exactly `round(rate * n)` labels
          switch.
        * With an odd number of classes the one left over is sent one way
          to the class it is most confused with (ties go to the smaller
          class index), so the mapping still covers every class.

        Args:
            confusion_matrix: square array of counts >= 0, rows true
                classes, columns predicted classes (e.g. from
                `keras_poison.metrics.confusion_matrix`).
            rate: float in [0, 1], the fraction of examples flipped.
                Defaults to `0.2`.
            seed: int, the key of every random choice. Defaults to `0`.

        Returns:
            A `TargetedFlip` with `num_classes = len(confusion_matrix)`.

        Example:

        >>> # Class 3 is never confused, and is still paired (with class 2).
        >>> cm = np.array([[90, 6, 3, 0], [4, 90, 3, 0], [3, 3, 90, 0],
        ...                [0, 0, 0, 99]])
        >>> TargetedFlip.from_confusion_matrix(cm).mapping
        {0: 1, 1: 0, 2: 3, 3: 2}
        """
        confusion = _validate_confusion_matrix(confusion_matrix)
        mapping = {}
        for a, b in confused_class_pairs(confusion):
            mapping[a], mapping[b] = b, a
        weights = confusion + confusion.T
        np.fill_diagonal(weights, -np.inf)
        for leftover in sorted(set(range(len(confusion))) - set(mapping)):
            # argmax returns the first maximum: ties go to the smaller class.
            mapping[leftover] = int(np.argmax(weights[leftover]))
        return cls(mapping, rate=rate, seed=seed, num_classes=len(confusion))

    @classmethod
    def to_class(cls, target, rate, num_classes, *, seed=0):
        """Relabels chosen examples of every other class to `target`.

        The examples are this attack's own keyed choice; for the
        class-oriented paper's FL / FL-1 baselines, which relabel a crafted
        attack's seeds, use `relabel_seeds`.

        Args:
            target: int, the class every chosen example is relabelled to.
            rate: float in [0, 1], the fraction of examples chosen.
            num_classes: int >= 2.
            seed: int. Defaults to `0`.
        """
        num_classes = validate_num_classes(num_classes)
        target = validate_class("target", target, num_classes)
        mapping = {c: int(target) for c in range(num_classes) if c != target}
        return cls(mapping, rate=rate, seed=seed, num_classes=num_classes)

    @classmethod
    def from_class(cls, source, target, rate, num_classes=None, *, seed=0):
        """Relabels chosen examples of `source` only, to `target`.

        The examples are this attack's own keyed choice; for the
        class-oriented paper's FL-2 baseline, which relabels a crafted
        attack's victim-class seeds, use `relabel_seeds`.

        Args:
            source: int, the only class whose examples are relabelled.
            target: int, their new label.
            rate: float in [0, 1], the probability that an example of
                `source` is relabelled (exactly `round(rate * n)` examples
                are chosen, those of `source` among them switch).
            num_classes: int >= 2 or `None`. Defaults to `None`.
            seed: int. Defaults to `0`.
        """
        return cls({source: target}, rate=rate, seed=seed, num_classes=num_classes)

    def _example_plan(self, index, num_examples):
        return self._select(index, num_examples, self.rate)

    def _poison_examples(self, x, labels, plan):
        table = tf.constant(self._target_table)
        size = len(self._target_table)
        target = tf.gather(table, tf.minimum(labels, size - 1))
        # Classes beyond the table are not sources: they keep their label.
        target = tf.where(labels < size, target, labels)
        return None, tf.where(plan, target, labels)

    def get_config(self):
        return {
            # JSON keys are strings, so the mapping travels as pairs.
            "mapping": [[s, t] for s, t in sorted(self.mapping.items())],
            "rate": self.rate,
            "seed": self.seed,
            "num_classes": self.num_classes,
        }


def confused_class_pairs(confusion_matrix):
    """The maximum-weight pairing of the classes of a confusion matrix.

    Seed 000, §3.1 pairs "classes that were frequently misclassified". With
    `W = confusion_matrix + confusion_matrix.T` (how often classes `a` and
    `b` are mistaken for each other, both ways), this returns the exact
    maximum-weight matching of maximum cardinality on the complete graph of
    the classes (`networkx.max_weight_matching(G, maxcardinality=True)`):
    every class is paired when the number of classes is even, all but one
    when it is odd, and among such pairings the one with the largest total
    `W`. Classes never confused (zero weight) are still paired, so a
    targeted flip built on the pairs covers every class. Ties between
    equally good pairings are resolved the same way on every call (the
    graph is built in a fixed order). For integer counts the matching is
    computed in exact integer arithmetic; for fractional matrices (rates)
    floating-point rounding can in rare near-ties pick a pairing whose
    total is below the optimum by a rounding error.

    Args:
        confusion_matrix: square array of counts >= 0 (rows true,
            columns predicted), for >= 2 classes.

    Returns:
        A list of `(a, b)` class pairs with `a < b`, most confused (largest
        `W[a, b]`) first, ties by class index; every class appears at most
        once.

    Example:

    >>> confused_class_pairs(np.array([[9, 1, 5], [0, 9, 1], [4, 2, 9]]))
    [(0, 2)]
    >>> # Greedy would take (0, 1) (weight 10) and be left with (2, 3) (0);
    >>> # the maximum-weight pairing takes (0, 2) and (1, 3) (9 + 9).
    >>> cm = np.array([[0, 10, 9, 0], [0, 0, 0, 9], [0, 0, 0, 0], [0, 0, 0, 0]])
    >>> confused_class_pairs(cm)
    [(0, 2), (1, 3)]
    """
    confusion = _validate_confusion_matrix(confusion_matrix)
    weights = confusion + confusion.T
    pairs = _maximum_weight_pairs(weights)
    return sorted(pairs, key=lambda pair: (-weights[pair], pair))


def _maximum_weight_pairs(weights):
    """Maximum-cardinality, maximum-weight matching of a symmetric matrix."""
    num_classes = len(weights)
    # Integer weights keep networkx's blossom algorithm in exact arithmetic.
    if np.all(weights == np.round(weights)) and weights.max() < 2**53:
        values = weights.astype(np.int64).tolist()
    else:
        values = weights.tolist()
    # A fixed insertion order (nodes, then edges in index order) makes the
    # matching, ties included, a pure function of the matrix.
    # Imported here: only the pairing needs it, and it costs ~11 MB at import.
    import networkx

    graph = networkx.Graph()
    graph.add_nodes_from(range(num_classes))
    graph.add_weighted_edges_from(
        (a, b, values[a][b])
        for a in range(num_classes)
        for b in range(a + 1, num_classes)
    )
    matching = networkx.max_weight_matching(graph, maxcardinality=True)
    return [(min(a, b), max(a, b)) for a, b in matching]


def relabel_seeds(x, y, seed_indices, label, source_classes=None):
    """The label-flip baseline of a crafted attack: its seeds, relabelled.

    The class-oriented paper (seed 003, §5) compares each crafted attack
    with label flipping on the same examples: the seeds the poisons were
    crafted from, unmodified, given the poison label. FL (COEG) relabels
    every seed to the supplanter, FL-1 (COES) every seed to the poison
    label, FL-2 (COES) only the victim-class seeds
    (`source_classes=[victim]`). Pass the crafted attack's own seeds
    (`attack.select_seeds(y)`, or `attack.poisons.source_indices` after
    `poison`) so the baseline differs from the attack only in the images.

    Args:
        x: the data set's images `(n, ...)`.
        y: its labels, sparse `(n,)`, `(n, 1)` or one-hot `(n, K)`.
        seed_indices: int array, the indices of the seeds in `(x, y)`.
        label: int, the label every relabelled seed gets.
        source_classes: list of ints or `None`, relabel only the seeds whose
            true class is one of these; `None` relabels every seed.
            Defaults to `None`.

    Returns:
        An `InjectPoisons` attack (use `poison(x, y)` or `ds.apply`) whose
        poisons are the chosen seeds' own images with label `label`
        (`attack.poisons.source_indices` lists them). Like every attack's,
        its mask marks what changed: the chosen seeds, except those whose
        label already was `label`.

    Example:

    >>> x = np.zeros((6, 2, 2, 1), "float32")
    >>> y = np.array([0, 1, 2, 0, 1, 2])
    >>> fl2 = relabel_seeds(x, y, [1, 2, 4, 5], label=0, source_classes=[2])
    >>> _, y_p, mask = fl2.poison(x, y)
    >>> np.flatnonzero(mask).tolist(), y_p.tolist()
    ([2, 5], [0, 1, 0, 0, 1, 0])
    """
    x = np.asarray(x)
    labels = to_class_indices(y, "y")[0]
    if len(x) != len(labels):
        raise ValueError(
            "Expected `x` and `y` to have the same number of examples. "
            f"Received: len(x)={len(x)}, len(y)={len(labels)}"
        )
    indices = np.asarray(seed_indices)
    if indices.ndim != 1 or not (
        indices.size == 0 or np.issubdtype(indices.dtype, np.integer)
    ):
        raise TypeError(
            "Expected `seed_indices` to be a 1-D array of ints. Received: "
            f"seed_indices of shape {indices.shape} and dtype {indices.dtype}"
        )
    indices = indices.astype("int64")
    if indices.size and (indices.min() < 0 or indices.max() >= len(labels)):
        raise ValueError(
            f"Expected `seed_indices` in [0, {len(labels)}). Received: "
            f"indices from {indices.min()} to {indices.max()}"
        )
    label = validate_class("label", label, None)
    if source_classes is not None:
        classes = [validate_class("source_classes", c, None) for c in source_classes]
        indices = indices[np.isin(labels[indices], classes)]
    indices = np.sort(indices)
    poisons = PoisonSet(
        images=x[indices],
        labels=np.full(len(indices), label, dtype="int64"),
        source_indices=indices,
        source_labels=labels[indices],
        config={"relabelled_to": label, "count": int(len(indices))},
    )
    return InjectPoisons(poisons)


def _validate_mapping(mapping, num_classes):
    if isinstance(mapping, dict):
        items = list(mapping.items())
    elif isinstance(mapping, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in mapping
    ):
        items = [tuple(p) for p in mapping]
    else:
        raise TypeError(
            "Expected `mapping` to be a dict {source_class: target_class}. "
            f"Received: mapping={mapping!r}"
        )
    if not items:
        raise ValueError("Expected `mapping` to have at least one pair. Received: mapping={}")
    result = {}
    for source, target in items:
        validate_class("mapping source", source, num_classes)
        validate_class("mapping target", target, num_classes)
        if source == target:
            raise ValueError(
                "Expected `mapping` to send each class to a different class. "
                f"Received: mapping[{source}]={target}"
            )
        if int(source) in result:
            raise ValueError(
                f"Expected each source class once in `mapping`. Received: {source} twice"
            )
        result[int(source)] = int(target)
    return result


def _validate_confusion_matrix(confusion_matrix):
    confusion = np.asarray(confusion_matrix, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(
            "Expected `confusion_matrix` to be a square 2-D array. "
            f"Received: shape {confusion.shape}"
        )
    if confusion.shape[0] < 2:
        raise ValueError(
            "Expected `confusion_matrix` for >= 2 classes. "
            f"Received: shape {confusion.shape}"
        )
    if not np.all(np.isfinite(confusion)) or np.any(confusion < 0):
        raise ValueError(
            "Expected `confusion_matrix` to hold finite counts >= 0. "
            f"Received: min={confusion.min()}, finite={np.all(np.isfinite(confusion))}"
        )
    return confusion
