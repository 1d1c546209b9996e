"""`Sanitize`: act on a detector's report in the pipeline the user already has.

The report says which examples of a data set are suspicious. `Sanitize`
finds them in a stream in one of two ways:

* `key="index"` (the default): by position, the example's index in the
  stream, as the attacks key on it. Applied to the same data in the same
  order it removes or relabels exactly the flagged examples; a stream that
  passes a `shuffle`, `repeat`, `shard` or `filter` first is refused, since
  positions no longer name the same examples there.
* `key="content"`: by a fingerprint of each example's image bytes and label
  (`keras_poison.fingerprints`), carried by the report
  (`report.with_content_keys(x, y)`). The flagged examples are then found
  whatever the order, shard or epoch they arrive in.

Both work in a `tf.data` pipeline (`ds.apply(sanitize)`) and on NumPy arrays
(`sanitize.apply(x, y)`), and give the same result.
"""

import numpy as np
import tensorflow as tf

from keras_poison import streams
from keras_poison._validation import to_class_indices
from keras_poison.fingerprints import content_keys
from keras_poison.fingerprints import content_keys_tensor
from keras_poison.defences.detectors.report import DetectionReport

_ACTIONS = ("drop", "relabel")
# Unbatched streams are sanitized by index in blocks of this many examples.
_BLOCK_SIZE = 512
_KEYS = ("index", "content")


class Sanitize:
    """Drops or relabels the examples a `DetectionReport` flags.

    With `action="drop"` the flagged examples leave the data set (the only
    transform of the library that changes its size, which is its purpose),
    their sample weights with them; with `action="relabel"` they stay, with
    the report's suggested label (label detectors such as
    `LabelIssueDetector` and `KNNDetector` suggest one). Labels keep their
    format (sparse, `(n, 1)` or one-hot), shape and dtype; every other
    example comes out bit-identical, in order.

    With `key="index"` apply it where the report was computed: on the same
    data, in the same order, before shuffling (an upstream `shuffle`,
    `repeat`, `shard` or `filter` raises). With `key="content"` the report
    must carry content keys (`report.with_content_keys(x, y)`, on the
    arrays the detector saw) and the stream may come in any order: each
    example is matched by its image bytes and label. A batched dataset works
    too (its batches then shrink by what is dropped).

    Args:
        report: a `DetectionReport`, or a bool mask `(n,)` of the examples
            to act on (then only `"drop"` is possible unless
            `suggested_labels` is given).
        action: `"drop"` or `"relabel"`. Defaults to `"drop"`.
        suggested_labels: int array `(n,)` or `None`, labels to use instead
            of the report's. Defaults to `None`.
        key: `"index"` (position in the stream) or `"content"` (the
            report's content keys). Defaults to `"index"`.

    Example:

    >>> report = DetectionReport(scores=np.array([0.1, 0.9, 0.2]),
    ...                          flagged=np.array([False, True, False]),
    ...                          suggested_labels=np.array([0, 2, 1]))
    >>> x, y = np.arange(12, dtype="float32").reshape(3, 2, 2, 1), np.array([0, 1, 1])
    >>> Sanitize(report).apply(x, y)[1].tolist()
    [0, 1]
    >>> Sanitize(report, action="relabel").apply(x, y)[1].tolist()
    [0, 2, 1]
    >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(Sanitize(report))
    >>> [int(label) for _, label in ds]
    [0, 1]
    >>> by_content = Sanitize(report.with_content_keys(x, y), key="content")
    >>> shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(3).apply(by_content)
    >>> sorted(int(label) for _, label in shuffled)
    [0, 1]
    """

    def __init__(self, report, action="drop", *, suggested_labels=None, key="index"):
        if not isinstance(report, DetectionReport):
            mask = np.asarray(report)
            report = DetectionReport(mask.astype(np.float64), mask)
        if action not in _ACTIONS:
            raise ValueError(f"Expected `action` in {_ACTIONS}. Received: action={action!r}")
        if key not in _KEYS:
            raise ValueError(f"Expected `key` in {_KEYS}. Received: key={key!r}")
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
        if key == "content" and report.content_keys is None:
            raise ValueError(
                "Expected a report with content keys for key='content'. Received: "
                f"a {report.detector!r} report without them; use "
                "`report.with_content_keys(x, y)` on the arrays the detector saw."
            )
        self.report = report
        self.action = action
        self.key = key
        self.flagged = report.flagged
        self.suggested_labels = (
            None if suggested_labels is None else np.asarray(suggested_labels, np.int64)
        )
        if self.suggested_labels is not None and self.suggested_labels.min(initial=0) < 0:
            raise ValueError(
                "Expected `suggested_labels` to be class indices >= 0. Received: a "
                f"label {int(self.suggested_labels.min())}"
            )
        if key == "content":
            self._content_table = _content_table(
                report.content_keys,
                self.flagged,
                self.suggested_labels if action == "relabel" else None,
            )

    @property
    def num_examples(self):
        return self.report.num_examples

    # -- NumPy -------------------------------------------------------------

    def apply(self, x, y):
        """Sanitizes NumPy arrays; returns `(x, y)` new arrays.

        With `key="content"` the arrays may hold the examples in any order
        (and any number of them); with `key="index"` they must be the
        `num_examples` examples of the report, in its order.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        labels, width = to_class_indices(y, "y")
        if len(x) != len(labels):
            raise ValueError(
                "Expected `x` and `y` to have the same number of examples. "
                f"Received: len(x)={len(x)}, len(y)={len(labels)}"
            )
        if self.key == "content":
            hit, new_labels = self._content_lookup_numpy(x, labels)
        else:
            if len(x) != self.num_examples:
                raise ValueError(
                    f"Expected the {self.num_examples} examples the report was made on. "
                    f"Received: {len(x)} images and {len(labels)} labels"
                )
            hit = self.flagged
            new_labels = self.suggested_labels
        if self.action == "drop":
            keep = ~hit
            return x[keep], y[keep]
        new_labels = np.where(hit, new_labels, labels)
        self._check_width(width, new_labels)
        if width is None:
            y_new = new_labels.astype(y.dtype).reshape(y.shape)
        else:
            # The stream path's relabelling (a column swap: smoothed rows stay smoothed).
            y_new = np.where(
                hit[:, None], streams.swap_label_columns(y, new_labels).numpy(), y
            )
        return x.copy(), y_new

    def _content_lookup_numpy(self, x, labels):
        keys = tf.constant(content_keys(x, labels))
        hit, new = self._content_lookup(keys)
        return hit.numpy(), new.numpy()

    def _content_lookup(self, keys):
        sorted_keys, flags, labels = self._content_table
        position = tf.minimum(
            tf.searchsorted(sorted_keys, keys, out_type=tf.int64), tf.shape(sorted_keys, out_type=tf.int64)[0] - 1
        )
        found = tf.equal(tf.gather(sorted_keys, position), keys)
        hit = tf.logical_and(found, tf.gather(flags, position))
        return hit, tf.gather(labels, position)

    def _check_width(self, width, labels):
        """Refuses labels a one-hot stream of `width` cannot hold (relabel only)."""
        if self.action != "relabel":
            return
        if width is not None and labels is not None and labels.max(initial=0) >= width:
            raise ValueError(
                f"Expected suggested labels below the one-hot width {width}. "
                f"Received: label {int(labels.max())}"
            )

    # -- tf.data -----------------------------------------------------------

    def __call__(self, dataset):
        """`ds.apply(sanitize)`: sanitizes a dataset as it streams; see `transform`."""
        return self.transform(dataset)

    def transform(self, dataset, batched=None, image_key=None):
        """Sanitizes a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`.

        Args:
            dataset: the stream, batched or not; `x` may be a dict or tuple
                of inputs of which one holds the images.
            batched: bool or `None`, whether elements are batches; `None`
                decides from the stream and raises when it reads both ways.
                Defaults to `None`.
            image_key: where the images sit in a dict or tuple `x`, or
                `None` for the only image-shaped input. Defaults to `None`.

        Returns:
            The sanitized `tf.data.Dataset`, same element structure.
        """
        layout = streams.describe(
            dataset, caller="Sanitize", batched=batched, image_key=image_key
        )
        if layout.label_format == streams.ONE_HOT and self.suggested_labels is not None:
            # Only the labels written: those of flagged examples.
            self._check_width(layout.label_width, self.suggested_labels[self.flagged])
        if self.key == "index":
            streams.check_positional(
                dataset,
                caller="Sanitize",
                remedy=(
                    "Apply Sanitize where the report was made, before shuffling, or "
                    "match examples by content: "
                    "`Sanitize(report.with_content_keys(x, y), key='content')`."
                ),
            )
            cardinality = int(dataset.cardinality())
            source = streams.batching_source(dataset) if layout.batched else None
            if source is not None:
                cardinality = source.num_examples
            elif layout.batched:
                raise ValueError(
                    "Sanitize(key='index') on a batched stream needs to see that it "
                    f"holds the report's {self.num_examples} examples (a `batch` op "
                    "over a dataset of known size, with no `skip`/`take` after it). "
                    "Apply Sanitize before `batch`, or match by content: "
                    "`Sanitize(report.with_content_keys(x, y), key='content')`."
                )
            if cardinality >= 0 and cardinality != self.num_examples:
                raise ValueError(
                    f"Expected a dataset of the {self.num_examples} examples the report "
                    f"was made on. Received: a dataset of {cardinality} examples"
                )
            if cardinality < 0:
                # A generator: positions name the report's examples only if
                # exactly that many arrive (checked as the stream is read).
                dataset = streams.expect_size(
                    dataset,
                    self.num_examples,
                    batched=False,
                    caller="Sanitize",
                    remedy=(
                        f"Give it the {self.num_examples} examples the report was made "
                        "on, in that order, or match by content: "
                        "`Sanitize(report.with_content_keys(x, y), key='content')`."
                    ),
                )
        else:
            source = None
        flagged = tf.constant(self.flagged)
        suggested = tf.constant(
            self.suggested_labels
            if self.suggested_labels is not None
            else np.zeros(self.num_examples, np.int64)
        )
        block = layout.as_blocks()

        def lookup(index, images, labels):
            if self.key == "content":
                keys = content_keys_tensor(images, block.class_indices(labels))
                return self._content_lookup(keys)
            in_range = tf.debugging.assert_less(
                index,
                tf.constant(self.num_examples, tf.int64),
                message=f"The dataset has more examples than the report ({self.num_examples}).",
            )
            checks = [in_range]
            if source is not None:  # batches as `batch` made them, or positions shift
                for ok, message in source.batch_checks(
                    index[0], tf.shape(index)[0], "Sanitize",
                    "Apply Sanitize before the op that changes the batches.",
                ):
                    checks.append(tf.debugging.Assert(ok, [message]))
            # Without the dependency the gather may run first and fail with a bare
            # out-of-range error instead of the message above.
            with tf.control_dependencies(checks):
                index = tf.identity(index)
            return tf.gather(flagged, index), tf.gather(suggested, index)

        def act(index, element):
            """Acts on a block `(B, ...)`; returns the element and a keep mask."""
            images, labels, rest = block.split(element)
            hit, new = lookup(index, images, labels)
            if self.action == "drop":
                return element, tf.logical_not(hit)
            labels = block.write_labels(labels, tf.cast(new, tf.int32), hit)
            return block.join(images, labels, rest), tf.ones_like(hit)

        def act_and_drop(index, element):
            """`act` on a block, with the dropped rows already taken out."""
            element, keep = act(index, element)
            if self.action == "drop":
                element = tf.nest.map_structure(lambda part: tf.boolean_mask(part, keep), element)
            return element

        def batch_size(element):
            return tf.cast(tf.shape(element[1])[0], tf.int64)

        if layout.batched:

            def act_on_batch(offset, *element):
                element = element if len(element) > 1 else element[0]
                size = batch_size(element)
                return offset + size, act_and_drop(offset + tf.range(size), element)

            scanned = dataset.scan(tf.constant(0, tf.int64), act_on_batch)
            # By index, positions are counted in the pipeline, so it must run
            # whole: `as_one_split` keeps tf.data service's `distributed_epoch`
            # from dividing it between workers. Content keys need no positions.
            return streams.as_one_split(scanned) if self.key == "index" else scanned

        if self.key == "index":
            # In blocks, as the attacks: one vectorized lookup per block, the
            # drop done inside the block, and `as_one_split` costs a step per
            # block; nothing but `unbatch` runs per example (a `filter` and a
            # `map` per example had cost 0.3-0.8 of the stream's throughput).
            blocks = dataset.enumerate().batch(_BLOCK_SIZE).map(
                act_and_drop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
            # The stream holds the report's examples (checked above), so the
            # size after a drop is known too.
            kept = self.num_examples - int(self.flagged.sum()) if self.action == "drop" else (
                self.num_examples
            )
            result = streams.as_one_split(blocks, unbatch=True, cardinality=kept)
            return streams.dropping(result, "filter") if self.action == "drop" else result

        # By content, on single examples.
        def act_on_example(index, element):
            element = tf.nest.map_structure(lambda part: part[None], element)
            element, keep = act(index[None], element)
            return tf.nest.map_structure(lambda part: part[0], element), keep[0]

        # Named functions: AutoGraph warns on two lambdas of one signature on a line.
        def kept(element, keep):
            return keep

        def without_flag(element, keep):
            return element

        acted = dataset.enumerate().map(
            act_on_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        if self.action == "drop":
            return acted.filter(kept).map(without_flag)
        return acted.map(without_flag)

    def get_config(self):
        return {"action": self.action, "key": self.key}

    def __repr__(self):
        return (
            f"Sanitize(action={self.action!r}, key={self.key!r}, "
            f"flagged={int(self.flagged.sum())} of {self.num_examples})"
        )


def _content_table(keys, flagged, suggested_labels):
    """Sorted unique keys with their flag and suggested label, as constants.

    Raises when two examples with the same content are treated differently
    (flagged and not, or, with `suggested_labels`, relabelled differently),
    since no stream could tell them apart.
    """
    keys = np.asarray(keys, np.int64)
    labels = (
        np.zeros(len(keys), np.int64) if suggested_labels is None else suggested_labels
    )
    order = np.argsort(keys, kind="stable")
    keys, flags, labels = keys[order], flagged[order], labels[order]
    unique, first = np.unique(keys, return_index=True)
    group = np.searchsorted(unique, keys)
    flag_conflict = flags != flags[first][group]
    label_conflict = flags & (labels != labels[first][group])
    if np.any(flag_conflict | label_conflict):
        at = np.flatnonzero(flag_conflict | label_conflict)[0]
        example = int(order[at])
        what = (
            "is flagged where another example with its content is not"
            if flag_conflict[at]
            else "has another suggested label than a flagged example with its content"
        )
        raise ValueError(
            "Expected examples with the same image and label to be treated alike "
            f"for key='content'. Received: example {example} {what}; use key='index'."
        )
    if len(unique) == 0:
        unique, first = np.array([-1], np.int64), np.array([0])
        flags, labels = np.array([False]), np.array([0], np.int64)
    with tf.init_scope():
        return (
            tf.constant(unique),
            tf.constant(flags[first]),
            tf.constant(labels[first]),
        )
