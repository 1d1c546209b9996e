"""`Sanitize`: act on a detector's report in the pipeline the user already has.

The report says which examples of a data set are suspicious, by position.
`Sanitize` keys on the same position the attacks key on (the example's index
in the stream, counted before any shuffle), so applied to the same data in
the same order it removes or relabels exactly the flagged examples, in a
`tf.data` pipeline (`ds.apply(sanitize)`) or on NumPy arrays
(`sanitize.apply(x, y)`).
"""

import numpy as np
import tensorflow as tf

from keras_poison._validation import to_class_indices
from keras_poison.attacks.base import _infer_batched
from keras_poison.attacks.base import _label_is_one_hot
from keras_poison.attacks.base import _pair_spec
from keras_poison.defences.detectors.report import DetectionReport

_ACTIONS = ("drop", "relabel")


class Sanitize:
    """Drops or relabels the examples a `DetectionReport` flags.

    With `action="drop"` the flagged examples leave the data set (the only
    transform of the library that changes its size, which is its purpose);
    with `action="relabel"` they stay, with the report's suggested label
    (label detectors such as `LabelIssueDetector` and `KNNDetector` suggest
    one). Labels keep their format (sparse or one-hot) and dtype; every
    other example comes out bit-identical, in order.

    Apply it where the report was computed: on the same data, in the same
    order, before shuffling. A batched dataset works too (its batches then
    shrink by what is dropped).

    Args:
        report: a `DetectionReport`, or a bool mask `(n,)` of the examples
            to act on (then only `"drop"` is possible unless
            `suggested_labels` is given).
        action: `"drop"` or `"relabel"`. Defaults to `"drop"`.
        suggested_labels: int array `(n,)` or `None`, labels to use instead
            of the report's. Defaults to `None`.

    Example:

    >>> report = DetectionReport(scores=np.array([0.1, 0.9, 0.2]),
    ...                          flagged=np.array([False, True, False]),
    ...                          suggested_labels=np.array([0, 2, 1]))
    >>> x, y = np.zeros((3, 2, 2, 1), "float32"), np.array([0, 1, 1])
    >>> Sanitize(report).apply(x, y)[1].tolist()
    [0, 1]
    >>> Sanitize(report, action="relabel").apply(x, y)[1].tolist()
    [0, 2, 1]
    >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(Sanitize(report))
    >>> [int(label) for _, label in ds]
    [0, 1]
    """

    def __init__(self, report, action="drop", suggested_labels=None):
        if not isinstance(report, DetectionReport):
            mask = np.asarray(report)
            report = DetectionReport(mask.astype(np.float64), mask)
        if action not in _ACTIONS:
            raise ValueError(f"Expected `action` in {_ACTIONS}. Received: action={action!r}")
        if suggested_labels is None:
            suggested_labels = report.suggested_labels
        elif np.shape(suggested_labels) != (report.num_examples,):
            raise ValueError(
                f"Expected `suggested_labels` of shape ({report.num_examples},). "
                f"Received: shape {np.shape(suggested_labels)}"
            )
        if action == "relabel" and suggested_labels is None:
            raise ValueError(
                "Expected a report with suggested labels (from LabelIssueDetector or "
                "KNNDetector) or `suggested_labels=` for action='relabel'. "
                f"Received: a {report.detector!r} report without them"
            )
        self.report = report
        self.action = action
        self.flagged = report.flagged
        self.suggested_labels = (
            None if suggested_labels is None else np.asarray(suggested_labels, np.int64)
        )

    @property
    def num_examples(self):
        return self.report.num_examples

    # -- NumPy -------------------------------------------------------------

    def apply(self, x, y):
        """Sanitizes NumPy arrays; returns `(x, y)` new arrays."""
        x = np.asarray(x)
        y = np.asarray(y)
        labels, width = to_class_indices(y, "y")
        if len(x) != self.num_examples or len(labels) != self.num_examples:
            raise ValueError(
                f"Expected the {self.num_examples} examples the report was made on. "
                f"Received: {len(x)} images and {len(labels)} labels"
            )
        if self.action == "drop":
            keep = ~self.flagged
            return x[keep], y[keep]
        new_labels = np.where(self.flagged, self.suggested_labels, labels)
        self._check_width(width, new_labels)
        if width is None:
            y_new = new_labels.astype(y.dtype).reshape(y.shape)
        else:
            y_new = y.copy()
            y_new[self.flagged] = np.eye(width, dtype=y.dtype)[new_labels[self.flagged]]
        return x.copy(), y_new

    def _check_width(self, width, labels):
        if width is not None and labels.max(initial=0) >= width:
            raise ValueError(
                f"Expected suggested labels below the one-hot width {width}. "
                f"Received: label {int(labels.max())}"
            )

    # -- tf.data -----------------------------------------------------------

    def __call__(self, dataset):
        """`ds.apply(sanitize)`: sanitizes a dataset of `(x, y)` as it streams."""
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(
                "Expected `dataset` to be a tf.data.Dataset of (x, y) pairs. "
                f"Received: dataset of type {type(dataset).__name__}"
            )
        _, y_spec = _pair_spec(dataset.element_spec)
        batched = _infer_batched(y_spec, None)
        one_hot = _label_is_one_hot(y_spec.shape.rank - int(batched), y_spec)
        if one_hot:
            self._check_width(y_spec.shape[-1], self.suggested_labels)
        cardinality = int(dataset.cardinality())
        if not batched and cardinality >= 0 and cardinality != self.num_examples:
            raise ValueError(
                f"Expected a dataset of the {self.num_examples} examples the report was "
                f"made on. Received: a dataset of {cardinality} examples"
            )
        flagged = tf.constant(self.flagged)
        suggested = tf.constant(
            self.suggested_labels if self.suggested_labels is not None else np.zeros(0, np.int64)
        )

        def act(index, x, y):
            in_range = tf.debugging.assert_less(
                index,
                tf.constant(self.num_examples, tf.int64),
                message=f"The dataset has more examples than the report ({self.num_examples}).",
            )
            # Without the dependency the gather may run first and fail with a bare
            # out-of-range error instead of the message above.
            with tf.control_dependencies([in_range]):
                index = tf.identity(index)
            hit = tf.gather(flagged, index)
            if self.action == "drop":
                keep = tf.logical_not(hit)
                if batched:
                    return tf.boolean_mask(x, keep), tf.boolean_mask(y, keep)
                return x, y, keep
            new = tf.gather(suggested, index)
            if one_hot:
                new = tf.one_hot(new, tf.shape(y)[-1], dtype=y.dtype)
                hit = hit[..., None]
            else:
                new = tf.cast(new, y.dtype)
            return x, tf.where(hit, new, y)

        def batch_size(y):
            return tf.cast(tf.shape(y)[0], tf.int64)

        def act_on_batch(offset, element):
            # A running offset gives every example of every batch its index.
            size = batch_size(element[1])
            return offset + size, act(offset + tf.range(size), *element)

        def act_on_example(index, element):
            return act(index, *element)

        def is_kept(x, y, keep):
            return keep

        def without_flag(x, y, keep):
            return x, y

        if batched:
            return dataset.scan(tf.constant(0, tf.int64), act_on_batch)
        indexed = dataset.enumerate().map(
            act_on_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        if self.action == "drop":
            return indexed.filter(is_kept).map(without_flag)
        return indexed

    def get_config(self):
        return {"action": self.action}

    def __repr__(self):
        return (
            f"Sanitize(action={self.action!r}, flagged={int(self.flagged.sum())} "
            f"of {self.num_examples})"
        )
