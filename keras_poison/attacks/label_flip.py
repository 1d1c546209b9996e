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

from keras_poison._validation import validate_num_classes
from keras_poison._validation import validate_rate
from keras_poison.attacks import keyed_random
from keras_poison.attacks.base import PoisoningAttack
from keras_poison.attacks.base import register


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
            flipped. Defaults to `0.2` (the seed's setting).
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

    def __init__(self, rate=0.2, num_classes=None, seed=0):
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

    The label-flip baselines of the class-oriented paper (seed 003, §5) are
    mappings too: `to_class` relabels examples of every other class to one
    target (FL / FL-1), `from_class` only those of one source class (FL-2).

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

    def __init__(self, mapping, rate=0.2, seed=0, num_classes=None):
        super().__init__(seed=seed, num_classes=num_classes)
        self.mapping = _validate_mapping(mapping, self.num_classes)
        self.rate = validate_rate("rate", rate)
        size = max(max(self.mapping), max(self.mapping.values())) + 1
        # target_table[c] is c's target, or c itself when c is not a source.
        self._target_table = np.arange(size, dtype=np.int32)
        for source, target in self.mapping.items():
            self._target_table[source] = target

    @classmethod
    def from_confusion_matrix(cls, confusion_matrix, rate=0.2, seed=0):
        """Pairs the most-confused classes of a model (seed 000, §3.1).

        The pairs are a greedy maximum-weight matching on
        `confusion_matrix + confusion_matrix.T` (off the diagonal): the two
        classes most often mistaken for each other are paired first, then the
        most-confused pair among the remaining classes, and so on; each pair
        is flipped both ways. With an odd number of classes the one left over
        is sent to the class it is most confused with.

        Args:
            confusion_matrix: square array, rows true classes, columns
                predicted classes (e.g. from `keras_poison.metrics`).
            rate: float in [0, 1], the fraction of examples flipped.
                Defaults to `0.2`.
            seed: int. Defaults to `0`.

        Returns:
            A `TargetedFlip` with `num_classes = len(confusion_matrix)`.
        """
        confusion = _validate_confusion_matrix(confusion_matrix)
        mapping = {}
        for a, b in confused_class_pairs(confusion):
            mapping[a], mapping[b] = b, a
        weights = confusion + confusion.T
        np.fill_diagonal(weights, -np.inf)
        for leftover in sorted(set(range(len(confusion))) - set(mapping)):
            mapping[leftover] = int(np.argmax(weights[leftover]))
        return cls(mapping, rate=rate, seed=seed, num_classes=len(confusion))

    @classmethod
    def to_class(cls, target, rate, num_classes, seed=0):
        """Relabels chosen examples of every other class to `target` (FL, FL-1).

        Args:
            target: int, the class every chosen example is relabelled to.
            rate: float in [0, 1], the fraction of examples chosen.
            num_classes: int >= 2.
            seed: int. Defaults to `0`.
        """
        num_classes = validate_num_classes(num_classes)
        _validate_class("target", target, num_classes)
        mapping = {c: int(target) for c in range(num_classes) if c != target}
        return cls(mapping, rate=rate, seed=seed, num_classes=num_classes)

    @classmethod
    def from_class(cls, source, target, rate, num_classes=None, seed=0):
        """Relabels chosen examples of `source` only, to `target` (FL-2).

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
    """Greedy matching of the most-confused classes of a confusion matrix.

    Args:
        confusion_matrix: square array of counts (rows true, columns
            predicted).

    Returns:
        A list of `(a, b)` class pairs with `a < b`, most confused first;
        every class appears at most once.

    Example:

    >>> confused_class_pairs(np.array([[9, 1, 5], [0, 9, 1], [4, 2, 9]]))
    [(0, 2)]
    """
    confusion = _validate_confusion_matrix(confusion_matrix)
    weights = confusion + confusion.T
    num_classes = len(confusion)
    candidates = sorted(
        (
            (-weights[a, b], a, b)
            for a in range(num_classes)
            for b in range(a + 1, num_classes)
        )
    )
    paired, pairs = set(), []
    for _, a, b in candidates:
        if a not in paired and b not in paired:
            pairs.append((a, b))
            paired.update((a, b))
    return pairs


def _validate_class(name, value, num_classes):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected `{name}` to be an int class. Received: {name}={value!r}")
    if num_classes is not None and not 0 <= value < num_classes:
        raise ValueError(
            f"Expected `{name}` in [0, {num_classes}). Received: {name}={value}"
        )
    if value < 0:
        raise ValueError(f"Expected `{name}` >= 0. Received: {name}={value}")


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
        _validate_class("mapping source", source, num_classes)
        _validate_class("mapping target", target, num_classes)
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
