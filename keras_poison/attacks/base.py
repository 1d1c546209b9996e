"""What every data-poisoning attack shares: one object, three uses.

An attack subclasses `PoisoningAttack` and implements one method,
`_poison_examples`, which poisons a block of examples given their global
indices. This base class turns that into

* `attack(dataset)` / `dataset.apply(attack)`: a streaming `tf.data`
  transform, vectorized over blocks of examples;
* `attack.poison(x, y)`: the same computation on NumPy arrays, which also
  returns the ground-truth mask of the examples it changed;
* `get_config()` / `from_config()` for saving and sharing the attack.

Labels may be sparse integers or one-hot rows and keep their format and
dtype; images keep their dtype. Which examples are poisoned, and how, depends
only on `(seed, example index)` (see `keyed_random`), so the result does not
depend on batch size, epochs, or shuffling and sharding done after the attack.
"""

import abc
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_poison._validation import validate_int
from keras_poison._validation import validate_num_classes
from keras_poison.attacks import keyed_random

# Unbatched datasets are poisoned in blocks of this many examples: one
# vectorized call per block is much cheaper than one call per example.
_BLOCK_SIZE = 512
# The NumPy path works through the arrays in chunks to bound peak memory.
_NUMPY_CHUNK = 4096


class PoisoningAttack(abc.ABC):
    """Base class of the attacks that poison a data set of `(x, y)` pairs.

    Subclasses implement `_poison_examples` and `get_config`, and keep the
    promises of the library's design guide: deterministic in
    `(seed, example index)`, exact poison counts when the size is known,
    untouched examples bit-identical, nothing dropped or reordered, and a
    ground-truth mask of what was changed.

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
    # attacks keyed on fixed indices do not, and never warn about it.
    uses_dataset_size = True

    def __init__(self, seed=0, num_classes=None):
        self.seed = keyed_random.validate_seed(seed)
        self.num_classes = validate_num_classes(num_classes, allow_none=True)

    # ------------------------------------------------------------------
    # What a subclass provides.

    @abc.abstractmethod
    def _example_plan(self, index, num_examples):
        """What happens to each example, from its index alone (TF ops).

        Args:
            index: int64 global indices of the examples, shape `(B,)`.
            num_examples: Python int, the data set's size, or `None` when
                unknown (then selection falls back to a per-example draw).

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
            labels: int32 sparse labels of the block, shape `(B,)`.
            plan: the rows of `_example_plan` for these examples.

        Returns:
            `(x_new, labels_new)`: `x_new` is `None` when the attack leaves
            images alone; otherwise untouched rows must equal `x` exactly.
        """

    @abc.abstractmethod
    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""

    def _check_images(self, x):
        """Checks NumPy images before any work; subclasses add checks."""

    def _check_stream(self, x_spec, batched, num_examples):
        """Checks a stream's image spec before it is built; subclasses add checks."""

    def _image_assertions(self, x):
        """Graph-side checks on a block of images (list of assert ops)."""
        return []

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
        cache = self.__dict__.setdefault("_plan_cache", {})
        if num_examples not in cache:
            # Computed eagerly even while a tf.data function is being traced,
            # so the table is captured as a constant.
            with tf.init_scope():
                index = tf.range(num_examples, dtype=tf.int64)
                cache[num_examples] = self._example_plan(index, num_examples)
        return cache[num_examples]

    # ------------------------------------------------------------------
    # The computation both paths run.

    def _poison_block(self, x, y, index, num_examples, one_hot):
        """Poisons a block; returns `(x, y, mask)` with formats preserved."""
        if one_hot:
            labels = tf.argmax(y, axis=-1, output_type=tf.int32)
        else:
            labels = tf.cast(y, tf.int32)
        checks = self._label_assertions(labels, index, num_examples)
        checks += self._image_assertions(x)
        with tf.control_dependencies(checks):
            plan = self._plan_rows(index, num_examples)
            x_new, labels_new = self._poison_examples(x, labels, plan)
        label_changed = tf.not_equal(labels_new, labels)
        if x_new is None:
            x_new, mask = x, label_changed
        else:
            non_batch_axes = tf.range(1, tf.rank(x))
            image_changed = tf.reduce_any(
                tf.not_equal(x_new, x), axis=non_batch_axes
            )
            mask = tf.logical_or(label_changed, image_changed)
        if one_hot:
            new_rows = tf.one_hot(labels_new, tf.shape(y)[-1], dtype=y.dtype)
            y_new = tf.where(label_changed[:, None], new_rows, y)
        else:
            y_new = tf.where(label_changed, tf.cast(labels_new, y.dtype), y)
        return x_new, y_new, mask

    def _label_assertions(self, labels, index, num_examples):
        checks = [
            tf.debugging.assert_non_negative(
                labels, message="Expected labels >= 0; received a negative label."
            )
        ]
        if self.num_classes is not None:
            checks.append(
                tf.debugging.assert_less(
                    labels,
                    self.num_classes,
                    message=(
                        f"Expected labels in [0, {self.num_classes}) "
                        f"(num_classes={self.num_classes}); received a label "
                        "outside that range."
                    ),
                )
            )
        if num_examples is not None:
            checks.append(
                tf.debugging.assert_less(
                    index,
                    tf.constant(num_examples, tf.int64),
                    message=(
                        f"The dataset has more than num_examples={num_examples} "
                        "examples; pass the true size as `num_examples`."
                    ),
                )
            )
        return checks

    # ------------------------------------------------------------------
    # tf.data path.

    def __call__(self, dataset):
        """Poisons a `tf.data.Dataset` of `(x, y)`; see `transform`."""
        return self.transform(dataset)

    def transform(self, dataset, num_examples=None, batched=None, with_mask=False):
        """Poisons a `tf.data.Dataset` of `(x, y)` pairs as it streams.

        Apply the attack before shuffling, sharding or repeating: the
        poisoned set is then the same whatever the batch size, shuffle
        order, shard or epoch. Nothing is materialized.

        Args:
            dataset: a `tf.data.Dataset` whose elements are `(x, y)`,
                unbatched or batched.
            num_examples: int or `None`, the number of examples in the data
                set. `None` takes the dataset's cardinality when it is known
                and unbatched; if the size stays unknown, each example is
                poisoned independently with probability `rate` instead of
                exactly `round(rate * n)` examples. Defaults to `None`.
            batched: bool or `None`, whether elements are batches. `None`
                infers it from the label's shape. Defaults to `None`.
            with_mask: bool, if `True` the elements become `(x, y, mask)`
                where `mask` says whether the example was changed.
                Defaults to `False`.

        Returns:
            A `tf.data.Dataset` with the same element structure (plus the
            mask when asked), order and cardinality.
        """
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(
                "Expected `dataset` to be a tf.data.Dataset of (x, y) pairs. "
                f"Received: dataset of type {type(dataset).__name__}"
            )
        x_spec, y_spec = _pair_spec(dataset.element_spec)
        if batched is None:
            batched = _infer_batched(y_spec, self.num_classes)
        one_hot = _label_is_one_hot(y_spec.shape.rank - int(batched), y_spec)
        if one_hot:
            self._check_one_hot_width(one_hot, y_spec.shape[-1])
        cardinality = int(dataset.cardinality())
        if num_examples is None and not batched and cardinality >= 0:
            num_examples = cardinality
        if num_examples is None and self.uses_dataset_size:
            warnings.warn(
                f"{type(self).__name__}: the dataset's size is unknown, so each "
                "example is poisoned independently at the given rate rather "
                "than exactly round(rate * n) of them. Pass `num_examples` "
                "to `transform` for an exact count.",
                stacklevel=2,
            )
        elif num_examples is not None:
            num_examples = validate_int("num_examples", num_examples, 0)
        self._check_stream(x_spec, batched, num_examples)

        def poison(index, x, y):
            x_new, y_new, mask = self._poison_block(
                x, y, index, num_examples, one_hot
            )
            return (x_new, y_new, mask) if with_mask else (x_new, y_new)

        if batched:
            return self._transform_batches(dataset, poison)

        poisoned = (
            dataset.enumerate()
            .batch(_BLOCK_SIZE)
            .map(
                lambda index, element: poison(index, *element),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .unbatch()
        )
        if cardinality >= 0:
            # `unbatch` forgets the size; the attack never changes it.
            poisoned = poisoned.apply(
                tf.data.experimental.assert_cardinality(cardinality)
            )
        return poisoned

    def _transform_batches(self, dataset, poison):
        """Poisons an already-batched dataset, in place in the pipeline."""

        # A running offset gives every example of every batch its global
        # index, whatever the batch sizes are.
        def batch_size(element):
            return tf.cast(tf.shape(element[1])[0], tf.int64)

        if not self.changes_images:
            # Label-only work is cheap: doing it inside the scan saves a
            # second function call per batch (measured: 0.76 vs 0.50 of the
            # bare pipeline's throughput).
            def poison_in_scan(offset, element):
                size = batch_size(element)
                return offset + size, poison(offset + tf.range(size), *element)

            return dataset.scan(tf.constant(0, tf.int64), poison_in_scan)

        def add_offset(offset, element):
            return offset + batch_size(element), (offset, element)

        def poison_batch(offset, element):
            return poison(offset + tf.range(batch_size(element)), *element)

        # Image work is heavy, so it runs in a parallel (ordered) map.
        return dataset.scan(tf.constant(0, tf.int64), add_offset).map(
            poison_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    # ------------------------------------------------------------------
    # NumPy path.

    def poison(self, x, y):
        """Poisons NumPy arrays and says which examples were changed.

        Runs the same computation as the `tf.data` path, with `n = len(x)`.

        Args:
            x: array of images, shape `(n, ...)`.
            y: array of labels, sparse `(n,)` or one-hot `(n, num_classes)`.

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
        if y.ndim not in (1, 2):
            raise ValueError(
                "Expected `y` to be sparse labels of shape (n,) or one-hot "
                f"labels of shape (n, num_classes). Received: y.shape={y.shape}"
            )
        one_hot = y.ndim == 2
        self._check_one_hot_width(one_hot, y.shape[-1])
        labels = np.argmax(y, axis=-1) if one_hot else y
        self._check_label_values(labels)
        self._check_images(x)

        n = len(x)
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
                one_hot,
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
    # Checks shared by both paths.

    def _check_one_hot_width(self, one_hot, width):
        if one_hot and self.num_classes is not None and width is not None:
            if width != self.num_classes:
                raise ValueError(
                    f"Expected one-hot labels of width num_classes="
                    f"{self.num_classes}. Received: labels of width {width}"
                )

    def _check_label_values(self, labels):
        if labels.size == 0:
            return
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels, 1) == 0):
                raise ValueError(
                    "Expected sparse labels to be whole numbers. "
                    f"Received: labels of dtype {labels.dtype} with fractions"
                )
        low, high = labels.min(), labels.max()
        upper = self.num_classes
        if low < 0 or (upper is not None and high >= upper):
            expected = f"[0, {upper})" if upper is not None else ">= 0"
            bad = low if low < 0 else high
            raise ValueError(
                f"Expected labels in {expected}"
                + (f" (num_classes={upper})" if upper is not None else "")
                + f". Received: a label {bad}"
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


def register(cls):
    """Registers an attack class with Keras' serialization under keras_poison."""
    return keras.saving.register_keras_serializable(package="keras_poison")(cls)


def _pair_spec(element_spec):
    """The `(x, y)` TensorSpecs of a dataset, or a clear TypeError."""
    if (
        isinstance(element_spec, (tuple, list))
        and len(element_spec) == 2
        and all(isinstance(s, tf.TensorSpec) for s in element_spec)
    ):
        return element_spec
    hint = ""
    if isinstance(element_spec, dict):
        hint = (
            " For a dict dataset (e.g. from tfds without as_supervised=True) "
            'use dataset.map(lambda d: (d["image"], d["label"])) first.'
        )
    raise TypeError(
        "Expected a dataset whose elements are (x, y) pairs of tensors. "
        f"Received: element_spec={element_spec}.{hint}"
    )


def _infer_batched(y_spec, num_classes):
    """Whether elements are batches, judged from the label's spec."""
    rank = y_spec.shape.rank
    if rank is None:
        raise ValueError(
            "Cannot tell whether the dataset is batched: the label's rank is "
            "unknown. Pass `batched=True` or `batched=False` to `transform`."
        )
    if rank == 0:
        return False
    if rank == 2:
        return True
    if rank == 1:
        width = y_spec.shape[0]
        # A one-hot row has a fixed width and a float dtype; a batch of
        # sparse labels has an unknown (or integer-typed) first dimension.
        if width is None or y_spec.dtype.is_integer:
            return True
        # A float vector of num_classes entries is one example's one-hot row.
        return not (num_classes is None or width == num_classes)
    raise ValueError(
        "Expected labels to be sparse (shape () or (batch,)) or one-hot "
        f"(shape (num_classes,) or (batch, num_classes)). Received: label "
        f"shape {y_spec.shape}"
    )


def _label_is_one_hot(example_rank, y_spec):
    if example_rank == 0:
        return False
    if example_rank == 1:
        return True
    raise ValueError(
        "Expected each example's label to be a scalar (sparse) or a vector "
        f"(one-hot). Received: label spec {y_spec}"
    )
