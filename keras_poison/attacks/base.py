"""What every data-poisoning attack shares: one object, three uses.

An attack subclasses `PoisoningAttack` and implements `_example_plan` (what
happens to each example, from its index) and `_poison_examples` (the work on
a block of examples). This base class turns that into

* `attack(dataset)` / `dataset.apply(attack)`: a streaming `tf.data`
  transform, vectorized over blocks of examples;
* `attack.poison(x, y)`: the same computation on NumPy arrays, which also
  returns the ground-truth mask of the examples it changed;
* `get_config()` / `from_config()` for saving and sharing the attack.

Both paths share one layout reader (`keras_poison.streams`) and one set of
checks, so whatever `poison()` rejects the stream rejects too, with the same
message. Labels may be sparse, a `(n, 1)` column or one-hot and keep their
format, shape and dtype; images keep their dtype. Which examples are
poisoned, and how, depends only on `(seed, example index)` (see
`keyed_random`); a stream that reaches the attack in another order than the
data's (an upstream `shuffle`, `repeat`, `shard`, `filter`, ...) is refused.
"""

import abc

import keras
import numpy as np
import tensorflow as tf

from keras_poison import streams
from keras_poison._validation import validate_int
from keras_poison._validation import validate_num_classes
from keras_poison.attacks import keyed_random

# Unbatched datasets are poisoned in blocks of this many examples: one
# vectorized call per block is much cheaper than one call per example.
_BLOCK_SIZE = 512
# The NumPy path works through the arrays in chunks to bound peak memory.
_NUMPY_CHUNK = 4096
# `num_examples` values that are not a size.
COUNT = "count"
UNKNOWN = "unknown"


class PoisoningAttack(abc.ABC):
    """Base class of the attacks that poison a data set of `(x, y)` pairs.

    Subclasses implement `_example_plan`, `_poison_examples` and
    `get_config`, and keep the promises of the library's design guide:
    deterministic in `(seed, example index)`, exact poison counts when the
    size is known, untouched examples bit-identical, nothing dropped or
    reordered, and a ground-truth mask of what was changed.

    Args:
        seed: int, the key of every random choice the attack makes.
            Defaults to `0`.
        num_classes: int or `None`, the number of classes, used to check
            labels and one-hot widths. Defaults to `None`.
    """

    # Whether the attack edits images (else only labels); label-only attacks
    # skip the per-example image comparison and run inline in tf.data.
    changes_images = False
    # Whether the selection needs the data set's size (exact round(rate·n));
    # attacks keyed on fixed indices do not.
    uses_dataset_size = True

    def __init__(self, seed=0, num_classes=None):
        self.seed = keyed_random.validate_seed(seed)
        self.num_classes = validate_num_classes(num_classes, allow_none=True)

    def __setattr__(self, name, value):
        # From first use on, the attack's tables (plan, patterns, pixels) and
        # the pipelines it built hold its settings: a later change would show
        # in `get_config` but not in the poisons, so it is refused.
        if (
            self.__dict__.get("_settings_fixed")
            and not name.startswith("_")
            and name != "verbose"
            and name in self.get_config()
        ):
            raise AttributeError(
                f"{type(self).__name__}.{name} cannot change once the attack has "
                f"poisoned data: its poisons (and any pipeline it built) keep "
                f"{name}={getattr(self, name)!r}. Received: {name}={value!r}. Make a "
                f"new attack: `{type(self).__name__}.from_config({{**attack.get_config(), "
                f"{name!r}: {value!r}}})`."
            )
        super().__setattr__(name, value)

    def _table_cache(self, name, empty):
        """The cache `name` (made with `empty()` on first use); fixes the settings."""
        self.__dict__["_settings_fixed"] = True
        return self.__dict__.setdefault(name, empty())

    # ------------------------------------------------------------------
    # What a subclass provides.

    @abc.abstractmethod
    def _example_plan(self, index, num_examples):
        """What happens to each example, from its index alone (TF ops).

        Args:
            index: int64 global indices of the examples, shape `(B,)`.
            num_examples: Python int, the data set's size, or `None` when
                the user asked for per-example draws (`num_examples="unknown"`).

        Returns:
            A tensor or tuple of tensors with leading dimension `B` (e.g.
            which examples are selected, their label shift), passed on to
            `_poison_examples`. When the size is known it is computed once
            for the whole data set and looked up per block.
        """

    @abc.abstractmethod
    def _poison_examples(self, x, labels, plan):
        """Poisons a block of examples (TensorFlow ops, graph-safe).

        Args:
            x: images of the block, shape `(B, ...)`, in their own dtype.
            labels: int32 class indices of the block, shape `(B,)`.
            plan: the rows of `_example_plan` for these examples.

        Returns:
            `(x_new, labels_new)`: `x_new` is `None` when the attack leaves
            images alone; otherwise untouched rows must equal `x` exactly.
        """

    @abc.abstractmethod
    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""

    def _check_image_spec(self, image_shape, dtype):
        """Checks one image's shape and NumPy dtype, before any work.

        Runs on both paths (the arrays' shape, or the stream's spec), so
        both reject the same inputs with the same message.
        """

    def _check_size(self, num_examples):
        """Checks the data set's size (an int) before any work."""

    def _image_checks(self, x):
        """`[(ok, message)]` value checks on a block of images (TF ops)."""
        return []

    def _rows_written(self, plan):
        """Which rows of a block `_poison_examples` may have changed, or `None`.

        A bool `(B,)` tensor lets the mask compare only those rows' images
        (every other row must be returned untouched); `None`, the default,
        compares every row.
        """
        return None

    # ------------------------------------------------------------------
    # Shared helpers for subclasses.

    def _select(self, index, num_examples, rate):
        """Which examples are poisoned at `rate` (exact when n is known)."""
        if num_examples is None:
            return keyed_random.select_bernoulli(index, rate, self.seed)
        count = keyed_random.selection_count(rate, num_examples)
        return keyed_random.select_exact(index, num_examples, count, self.seed)

    def _plan_rows(self, index, num_examples):
        """The plan of the examples at `index`, via the cached table if any."""
        if num_examples is None:
            return self._example_plan(index, None)
        table = self._plan_table(num_examples)
        return tf.nest.map_structure(lambda column: tf.gather(column, index), table)

    def _plan_table(self, num_examples):
        """The plan of all `num_examples` examples, computed once and cached.

        A few bytes per example (the data itself is never materialized),
        so each block costs a gather instead of a keyed permutation.
        """
        cache = self._table_cache("_plan_cache", dict)
        if num_examples not in cache:
            # Computed eagerly even while a tf.data function is being traced,
            # so the table is captured as a constant.
            with tf.init_scope():
                index = tf.range(num_examples, dtype=tf.int64)
                cache[num_examples] = self._example_plan(index, num_examples)
        return cache[num_examples]

    # ------------------------------------------------------------------
    # The computation both paths run.

    def _poison_block(self, x, y, index, num_examples, layout, eager=False, extra_checks=()):
        """Poisons a block; returns `(x, y, mask)` with formats preserved.

        `eager=True` (the NumPy path) raises the checks' messages as
        `ValueError`; in a stream they are graph assertions with the same
        messages, raised on the first block that breaks them.
        """
        self.__dict__["_settings_fixed"] = True  # see __setattr__
        labels = layout.class_indices(y)
        checks = self._label_checks(y, labels, layout)
        checks += self._image_checks(x)
        checks += list(extra_checks)
        if num_examples is not None:
            checks.append(
                (
                    tf.reduce_all(index < num_examples),
                    f"{type(self).__name__}: the dataset has more than "
                    f"num_examples={num_examples} examples; pass the true size "
                    "as `num_examples`.",
                )
            )
        if eager:
            for ok, message in checks:
                if not bool(ok):
                    raise ValueError(message)
            assertions = []
        else:
            assertions = [tf.debugging.Assert(ok, [message]) for ok, message in checks]
        with tf.control_dependencies(assertions):
            plan = self._plan_rows(index, num_examples)
            x_new, labels_new = self._poison_examples(x, labels, plan)
        label_changed = tf.not_equal(labels_new, labels)
        if x_new is None:
            x_new, mask = x, label_changed
        else:
            image_changed = _rows_changed(x, x_new, self._rows_written(plan))
            mask = tf.logical_or(label_changed, image_changed)
        y_new = layout.write_labels(y, labels_new, label_changed)
        return x_new, y_new, mask

    def _label_checks(self, y, labels, layout):
        if self.num_classes is None:
            checks = [
                (
                    tf.reduce_all(labels >= 0),
                    "Expected labels >= 0. Received: a negative label.",
                )
            ]
        else:
            checks = [
                (
                    tf.reduce_all((labels >= 0) & (labels < self.num_classes)),
                    f"Expected labels in [0, {self.num_classes}) "
                    f"(num_classes={self.num_classes}). Received: a label "
                    "outside that range.",
                )
            ]
        if layout.label_format == streams.ONE_HOT:
            # A row's class is its largest entry; with a tie (or a row of
            # zeros) it has none, and swapping two equal columns to relabel
            # it would change nothing while the mask reported a change.
            largest = tf.reduce_max(y, axis=-1, keepdims=True)
            ties = tf.reduce_sum(tf.cast(tf.equal(y, largest), tf.int32), axis=-1)
            checks.append(
                (
                    tf.reduce_all(ties == 1),
                    "Expected every one-hot or soft label row to have a single "
                    "largest entry (its class). Received: a row whose largest "
                    "entry is tied (or a row of zeros), so its class is undefined. "
                    "Pass sparse class indices, or fix those rows.",
                )
            )
        elif not y.dtype.is_integer:
            checks.append(
                (
                    tf.reduce_all(tf.equal(y, tf.round(y))),
                    "Expected sparse labels to be whole numbers. Received: "
                    f"labels of dtype {y.dtype.name} with fractions.",
                )
            )
        return checks

    # ------------------------------------------------------------------
    # tf.data path.

    def __call__(self, dataset):
        """Poisons a `tf.data.Dataset` of `(x, y)`; see `transform`."""
        return self.transform(dataset)

    def transform(
        self, dataset, num_examples=None, batched=None, with_mask=False, image_key=None
    ):
        """Poisons a `tf.data.Dataset` as it streams.

        Elements may be `(x, y)` or `(x, y, sample_weight)` (weights pass
        through), with `x` the images or a dict or tuple of inputs of which
        one holds them. Apply the attack before shuffling, sharding or
        repeating: the poisoned set is then the same whatever the batch
        size, shuffle order, shard or epoch, and equals `poison()` on the
        same arrays. An order- or size-changing op upstream raises.
        Nothing is materialized.

        Args:
            dataset: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`,
                unbatched or batched.
            num_examples: the number of examples in the data set: an int;
                `None` to take it from the pipeline (an unbatched stream's
                cardinality, or the size of what a `batch` op reads), and
                raise when it cannot; `"count"` to count the examples in
                one pass over the stream; or `"unknown"` to poison each
                example independently with probability `rate` instead of
                exactly `round(rate * n)` of them (no longer the same set
                as `poison()`). Defaults to `None`.
            batched: bool or `None`, whether elements are batches. `None`
                decides from the stream (see `keras_poison.streams`) and
                raises when the stream reads both ways. Defaults to `None`.
            with_mask: bool, if `True` the elements become `(x, y, mask)`
                (or `(x, y, sample_weight, mask)`) where `mask` says whether
                the example was changed. Defaults to `False`.
            image_key: the key (dict) or position (tuple) of the images in a
                multi-input `x`, or `None` to take the only image-shaped
                input. Defaults to `None`.

        Returns:
            A `tf.data.Dataset` with the same element structure (plus the
            mask when asked), order and cardinality.
        """
        name = type(self).__name__
        layout = streams.describe(
            dataset,
            caller=name,
            batched=batched,
            image_key=image_key,
            num_classes=self.num_classes,
        )
        streams.check_positional(
            dataset,
            caller=name,
            remedy="Apply the attack first: `ds.apply(attack).shuffle(...)`.",
        )
        stated = num_examples is not None and not isinstance(num_examples, str)
        num_examples, source = self._resolve_size(dataset, layout, num_examples)
        if stated:
            dataset, source = self._check_stated_size(dataset, layout, num_examples)
        image_shape = layout.image_spec.shape[1:] if layout.batched else layout.image_spec.shape
        self._check_image_spec(tuple(image_shape), layout.image_spec.dtype.as_numpy_dtype)
        if num_examples is not None:
            self._check_size(num_examples)

        block_layout = layout.as_blocks()

        def poison(index, element):
            images, labels, rest = block_layout.split(element)
            extra = []
            if source is not None:  # positions come from the `batch` op: check they hold
                extra = source.batch_checks(
                    index[0], tf.shape(index)[0], name,
                    remedy="Apply the attack right after `batch`, before the op that "
                    "changes the batches." if stated else None,
                )
            x_new, y_new, mask = self._poison_block(
                images, labels, index, num_examples, block_layout, extra_checks=extra
            )
            out = block_layout.join(x_new, y_new, rest)
            return (*out, mask) if with_mask else out

        # Positions are counted by the pipeline itself (`enumerate`, a running
        # offset), so it must run whole, in its order: `as_one_split` keeps
        # tf.data service's `distributed_epoch` from dividing it between workers.
        if layout.batched:
            return streams.as_one_split(self._transform_batches(dataset, poison))

        cardinality = int(dataset.cardinality())

        blocks = (
            dataset.enumerate()
            .batch(_BLOCK_SIZE)
            .map(poison, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        )
        # `unbatch` forgets the size; the attack never changes it.
        return streams.as_one_split(
            blocks, unbatch=True, cardinality=cardinality if cardinality >= 0 else None
        )

    def _resolve_size(self, dataset, layout, num_examples):
        """`(size, source)`: the data set's size as an int (or `None` for
        per-example draws), and the `BatchingSource` it was read from, if any."""
        name = type(self).__name__
        if isinstance(num_examples, str):
            if num_examples == COUNT:
                return streams.count_examples(dataset, layout), None
            if num_examples == UNKNOWN:
                return None, None
            raise ValueError(
                f"Expected `num_examples` to be an int, None, {COUNT!r} or "
                f"{UNKNOWN!r}. Received: num_examples={num_examples!r}"
            )
        if num_examples is not None:
            return validate_int("num_examples", num_examples, 0), None
        if layout.batched:
            source = streams.batching_source(dataset)
            if source is not None:
                return source.num_examples, source
            size = None
        else:
            size = int(dataset.cardinality())
            size = size if size >= 0 else None
        if size is not None or not self.uses_dataset_size:
            return size, None
        raise ValueError(
            f"{name}: the dataset's number of examples is unknown, so exactly "
            "round(rate * n) of them cannot be chosen. Pass "
            "`num_examples=<int>` to `transform`, `num_examples='count'` to "
            "count them in one pass, or `num_examples='unknown'` to poison "
            "each example independently at `rate` (not the same set as "
            "`poison()`)."
        )

    def _check_stated_size(self, dataset, layout, num_examples):
        """`(dataset, source)`: `dataset` checked to hold the `num_examples`
        the user stated, and the `BatchingSource` its batches come from, if any.

        A size the pipeline shows must agree now; one it does not show is
        checked as the stream is read (`streams.expect_size`). With a
        `source`, each batch's size is checked too, as when the size is read
        from the pipeline: an op that cut the batches would otherwise shift
        every position.
        """
        name = type(self).__name__
        source = None
        if layout.batched:
            source = streams.batching_source(dataset)
            shown = None if source is None else source.num_examples
        else:
            shown = int(dataset.cardinality())
            shown = shown if shown >= 0 else None
        if shown is None:
            checked = streams.expect_size(
                dataset,
                num_examples,
                batched=layout.batched,
                caller=name,
                remedy="Pass the true size, or num_examples='count'.",
            )
            return checked, None
        if shown != num_examples:
            raise ValueError(
                f"{name}: the dataset holds {shown} examples, but "
                f"num_examples={num_examples} was passed. Pass the true size "
                "or leave `num_examples=None` to take it from the pipeline."
            )
        return dataset, source

    def _transform_batches(self, dataset, poison):
        """Poisons an already-batched dataset, in place in the pipeline."""

        # A running offset gives every example of every batch its global
        # index, whatever the batch sizes are. (Numbering the batches of a
        # known `batch` op instead, in a parallel map, was measured too:
        # 1.07 against 1.00 of the bare pipeline on a quiet machine, 0.85
        # against 1.01 beside a training run; benchmarks §1.)
        def batch_size(element):
            return tf.cast(tf.shape(element[1])[0], tf.int64)

        if not self.changes_images:
            # Label-only work is cheap: doing it inside the scan saves a
            # second function call per batch (measured: 0.76 vs 0.50 of the
            # bare pipeline's throughput).
            def poison_in_scan(offset, element):
                size = batch_size(element)
                return offset + size, poison(offset + tf.range(size), element)

            return dataset.scan(tf.constant(0, tf.int64), _packed(poison_in_scan))

        def add_offset(offset, element):
            return offset + batch_size(element), (offset, element)

        def poison_batch(offset, element):
            return poison(offset + tf.range(batch_size(element)), element)

        # Image work is heavy, so it runs in a parallel (ordered) map.
        return dataset.scan(tf.constant(0, tf.int64), _packed(add_offset)).map(
            poison_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    # ------------------------------------------------------------------
    # NumPy path.

    def poison(self, x, y):
        """Poisons NumPy arrays and says which examples were changed.

        Runs the same computation, with the same checks, as the `tf.data`
        path, with `n = len(x)`.

        Args:
            x: array of images, shape `(n, ...)`.
            y: array of labels: sparse `(n,)`, a column `(n, 1)` or one-hot
                `(n, num_classes)`.

        Returns:
            `(x_poisoned, y_poisoned, mask)`: new arrays with the dtypes and
            shapes of `x` and `y`, and a bool array `mask` of shape `(n,)`,
            True exactly for the examples whose image or label changed.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim < 1 or y.ndim < 1:
            raise ValueError(
                "Expected `x` and `y` to be arrays with a leading example axis. "
                f"Received: x.shape={x.shape}, y.shape={y.shape}"
            )
        if len(x) != len(y):
            raise ValueError(
                "Expected `x` and `y` to have the same number of examples. "
                f"Received: len(x)={len(x)}, len(y)={len(y)}"
            )
        label_format, width = streams.array_label_format(y, self.num_classes)
        layout = streams.StreamLayout(
            batched=True,
            label_format=label_format,
            label_width=width,
            image_spec=tf.TensorSpec(x.shape, tf.as_dtype(x.dtype)),
            label_spec=tf.TensorSpec(y.shape, tf.as_dtype(y.dtype)),
        )
        self._check_image_spec(x.shape[1:], x.dtype)
        n = len(x)
        self._check_size(n)
        if n == 0:
            return x.copy(), y.copy(), np.zeros((0,), dtype=bool)
        x_parts, y_parts, mask_parts = [], [], []
        for start in range(0, n, _NUMPY_CHUNK):
            stop = min(start + _NUMPY_CHUNK, n)
            x_new, y_new, mask = self._poison_block(
                tf.constant(x[start:stop]),
                tf.constant(y[start:stop]),
                tf.range(start, stop, dtype=tf.int64),
                n,
                layout,
                eager=True,
            )
            x_parts.append(x_new.numpy())
            y_parts.append(y_new.numpy())
            mask_parts.append(mask.numpy())
        return (
            np.concatenate(x_parts),
            np.concatenate(y_parts),
            np.concatenate(mask_parts),
        )

    # ------------------------------------------------------------------
    # Serialization.

    @classmethod
    def from_config(cls, config):
        """Creates the attack from the dict `get_config` returned."""
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


def _rows_changed(x, x_new, written=None):
    """Per row, whether any value of `x_new` differs from `x`.

    With `written` (bool, per row) only those rows are compared: an
    injection that replaces a few examples of a block then reads a few
    images instead of the whole block twice.
    """
    non_batch_axes = tf.range(1, tf.rank(x))
    if written is None:
        return tf.reduce_any(tf.not_equal(x_new, x), axis=non_batch_axes)
    rows = tf.where(written)
    differs = tf.reduce_any(
        tf.not_equal(tf.gather_nd(x_new, rows), tf.gather_nd(x, rows)), axis=non_batch_axes
    )
    return tf.scatter_nd(rows, differs, tf.shape(written, out_type=tf.int64))


def register(cls):
    """Registers an attack class with Keras' serialization under keras_poison."""
    return keras.saving.register_keras_serializable(package="keras_poison")(cls)


def _packed(function):
    """`scan` hands a tuple element over as several arguments; repack them."""

    def wrapper(state, *element):
        return function(state, element if len(element) > 1 else element[0])

    return wrapper
