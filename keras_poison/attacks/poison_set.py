"""Crafted poisons as data: a shareable `PoisonSet` and the `InjectPoisons` transform.

A crafting attack (`SupplanterPoison`, `VictimPoison`) turns seed examples
into poisons. `PoisonSet` holds them (images, labels, and the indices of the
seeds they came from), saves to a plain `.npz` and loads without pickle.
`InjectPoisons` puts a poison set into a training stream: each poison
replaces the example it was crafted from (the class-oriented paper's set
attack), or, with `keep_clean=False`, only the poisons remain (its
single-instance attack).
"""

import json

import numpy as np
import tensorflow as tf

from keras_poison import streams
from keras_poison._validation import validate_int
from keras_poison.attacks.base import PoisoningAttack
from keras_poison.attacks.base import register

_ARRAYS = ("images", "labels", "source_indices", "source_labels", "steps_taken")


class PoisonSet:
    """Crafted poisons with the seeds they came from.

    Args:
        images: array `(m, ...)`, the poisoned images.
        labels: int array `(m,)`, the label each poison is trained with.
        source_indices: int array `(m,)`, the index (in the data set the
            seeds were drawn from) of the seed each poison was crafted
            from; distinct.
        source_labels: int array `(m,)` or `None`, the seeds' true labels.
            Defaults to `labels`.
        steps_taken: int array `(m,)` or `None`, the signed steps applied
            to each poison. Defaults to zeros.
        config: dict or `None`, JSON-serializable description of how the
            poisons were made (the attack's `get_config()`). Defaults to
            `{}`.

    Example:

    >>> poisons = PoisonSet(
    ...     images=np.zeros((2, 4, 4, 3), "float32"),
    ...     labels=np.array([0, 0]),
    ...     source_indices=np.array([3, 7]),
    ... )
    >>> path = os.path.join(tempfile.mkdtemp(), "poisons.npz")
    >>> poisons.save(path)
    >>> PoisonSet.load(path).source_indices.tolist()
    [3, 7]
    """

    def __init__(
        self,
        images,
        labels,
        source_indices,
        source_labels=None,
        steps_taken=None,
        config=None,
    ):
        self.images = np.asarray(images)
        self.labels = _int_array("labels", labels)
        self.source_indices = _int_array("source_indices", source_indices)
        m = len(self.labels)
        self.source_labels = (
            self.labels.copy()
            if source_labels is None
            else _int_array("source_labels", source_labels)
        )
        self.steps_taken = (
            np.zeros((m,), "int64")
            if steps_taken is None
            else _int_array("steps_taken", steps_taken)
        )
        self.config = dict(config or {})
        for name in _ARRAYS:
            length = len(getattr(self, name))
            if length != m:
                raise ValueError(
                    "Expected every array of a PoisonSet to have one row per "
                    f"poison ({m} labels). Received: {name} with {length} rows"
                )
        if self.images.ndim < 2:
            raise ValueError(
                "Expected `images` of shape (num_poisons, ...). Received: "
                f"images.shape={self.images.shape}"
            )
        if np.any(self.labels < 0) or np.any(self.source_indices < 0):
            raise ValueError(
                "Expected non-negative `labels` and `source_indices`. Received: "
                f"min label {self.labels.min()}, min index "
                f"{self.source_indices.min()}"
            )
        if len(np.unique(self.source_indices)) != m:
            raise ValueError(
                "Expected distinct `source_indices` (one poison per seed). "
                "Received: repeated indices"
            )

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        return (
            f"PoisonSet({len(self)} poisons, images {self.images.shape[1:]} "
            f"{self.images.dtype}, labels {np.bincount(self.labels).tolist()})"
        )

    def save(self, path):
        """Writes the poisons to an `.npz` file (no pickled objects)."""
        np.savez(
            path,
            **{name: getattr(self, name) for name in _ARRAYS},
            config=np.array(json.dumps(self.config)),
        )

    @classmethod
    def load(cls, path):
        """Reads poisons saved by `save`; never unpickles anything.

        Raises:
            ValueError: if the file lacks an array or its arrays disagree.
        """
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in _ARRAYS + ("config",) if name not in data]
            if missing:
                raise ValueError(
                    f"Expected a poison set file with arrays {list(_ARRAYS)} and "
                    f"config. Received: {path!r} missing {missing}"
                )
            arrays = {name: data[name] for name in _ARRAYS}
            config = json.loads(str(data["config"]))
        return cls(**arrays, config=config)

    def to_dataset(self):
        """The poisons alone as a `tf.data.Dataset` of `(image, label)`."""
        return tf.data.Dataset.from_tensor_slices((self.images, self.labels))

    def get_config(self):
        """The poisons as JSON-serializable lists (see `from_config`)."""
        return {
            "images": self.images.tolist(),
            "dtype": self.images.dtype.name,
            **{name: getattr(self, name).tolist() for name in _ARRAYS[1:]},
            "config": self.config,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        images = np.asarray(config.pop("images"), dtype=config.pop("dtype"))
        return cls(images=images, **config)


def _int_array(name, values):
    array = np.asarray(values)
    if array.ndim != 1 or not (
        array.size == 0 or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(
            f"Expected `{name}` to be a 1-D array of integers. Received: "
            f"{name} of shape {array.shape} and dtype {array.dtype}"
        )
    return array.astype("int64")


@register
class InjectPoisons(PoisoningAttack):
    """Replaces the examples that poisons were crafted from by the poisons.

    The set attack of the class-oriented paper (§5.2.2): in a training set
    of `n` examples a fraction α is replaced by crafted poisons. Example
    `i` of the stream becomes poison `j` (image and label) when
    `poisons.source_indices[j] == i`; every other example passes through
    bit-identical. Which examples change depends only on their index, so
    the result does not depend on batching, and the mask says exactly what
    changed.

    With `keep_clean=False` only the replaced examples remain (in stream
    order): with a single poison this is the paper's single-instance attack
    (§5.2.1), training on one poisoned point.

    The poison images live in a `tf.Variable` that the pipeline reads each
    time it runs, so `assign_images` (used by the `RecraftPoisons`
    callback) changes what later epochs see without rebuilding the pipeline.
    So does `release(count)` (used by `PacedPoisons`, with `keep_clean=True`):
    only the first `count` poisons are injected from the next pass on, and
    the examples of the others pass through untouched (and unmasked). A
    `cache()` after the attack would freeze the first pass instead. "The
    next pass" is the next one tf.data *computes*: through `.repeat()` (or
    `fit(steps_per_epoch=...)`, which keeps one iterator) its prefetching
    may have prepared part or all of it already. `passes` counts the passes
    that have reached the first poison (in stream order), so a caller can
    tell: `PacedPoisons` refuses an epoch that was not exactly one pass.

    Args:
        poisons: a `PoisonSet` whose images have the stream's image shape
            and dtype.
        keep_clean: bool, whether untouched examples stay in the stream.
            Defaults to `True`.
        num_classes: int or `None`, checks labels and one-hot widths.
            Defaults to `None`.

    Example:

    >>> x = np.zeros((10, 4, 4, 3), "float32")
    >>> y = np.arange(10) % 5
    >>> poisons = PoisonSet(np.ones((2, 4, 4, 3), "float32"), [0, 0], [3, 8])
    >>> x_p, y_p, mask = InjectPoisons(poisons).poison(x, y)
    >>> np.flatnonzero(mask).tolist(), y_p.tolist()
    ([3, 8], [0, 1, 2, 0, 4, 0, 1, 2, 0, 4])
    >>> train_ds = tf.data.Dataset.from_tensor_slices((x, y))
    >>> only_poisons = train_ds.apply(InjectPoisons(poisons, keep_clean=False))
    >>> int(only_poisons.cardinality())
    2
    """

    changes_images = True
    uses_dataset_size = False

    def __init__(self, poisons, keep_clean=True, num_classes=None):
        if isinstance(poisons, dict):
            poisons = PoisonSet.from_config(poisons)
        if not isinstance(poisons, PoisonSet):
            raise TypeError(
                "Expected `poisons` to be a PoisonSet. Received: poisons of "
                f"type {type(poisons).__name__}"
            )
        if not isinstance(keep_clean, bool):
            raise TypeError(
                f"Expected `keep_clean` to be a bool. Received: keep_clean={keep_clean!r}"
            )
        super().__init__(seed=0, num_classes=num_classes)
        if num_classes is not None and len(poisons) and poisons.labels.max() >= num_classes:
            raise ValueError(
                f"Expected poison labels in [0, {num_classes}). Received: a "
                f"poison label {poisons.labels.max()}"
            )
        self.poisons = poisons
        self.keep_clean = keep_clean
        order = np.argsort(poisons.source_indices, kind="stable")
        with tf.init_scope():
            self._sorted_sources = tf.constant(poisons.source_indices[order])
            self._row_of_sorted = tf.constant(order.astype("int64"))
            self._labels = tf.constant(poisons.labels.astype("int32"))
            self._images = tf.Variable(poisons.images, trainable=False, name="poisons")
            self._released = tf.Variable(len(poisons), dtype=tf.int64, trainable=False,
                                         name="released_poisons")
            self._passes = tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name="passes_reaching_poisons")
        # The row of the first poison in stream order: a block that holds it
        # is a pass reaching the poisons.
        self._first_row = int(order[0]) if len(poisons) else None

    @property
    def released(self):
        """How many poisons (the first ones of `poisons`) are injected now."""
        return int(self._released.numpy())

    @property
    def passes(self):
        """How many passes over the data have reached the first poison.

        Counted as the poisons are computed (by a stream, or by `poison` on
        arrays), one per pass; a pass that tf.data prepared ahead counts
        when it was prepared.
        """
        return int(self._passes.numpy())

    def release(self, count):
        """Injects only the first `count` poisons from the next pass on.

        Args:
            count: int in `[0, len(poisons)]`.
        """
        if not self.keep_clean:
            raise ValueError(
                "InjectPoisons.release needs keep_clean=True: a stream of the "
                "poisons alone has one element per poison and cannot hold fewer. "
                "Received: keep_clean=False"
            )
        count = validate_int("count", count, 0)
        if count > len(self.poisons):
            raise ValueError(
                f"Expected `count` <= the number of poisons ({len(self.poisons)}). "
                f"Received: count={count}"
            )
        self._released.assign(count)

    def _is_injected(self, plan):
        return (plan >= 0) & (plan < self._released)

    def assign_images(self, images):
        """Replaces the poison images in place (same shape and dtype)."""
        images = np.asarray(images)
        if images.shape != self.poisons.images.shape:
            raise ValueError(
                f"Expected images of shape {self.poisons.images.shape}. "
                f"Received: images.shape={images.shape}"
            )
        images = images.astype(self.poisons.images.dtype)
        self._images.assign(images)
        self.poisons.images = images

    def _example_plan(self, index, num_examples):
        # Row of the poison that replaces each example, or -1.
        if len(self.poisons) == 0:
            return tf.fill(tf.shape(index), tf.constant(-1, tf.int64))
        position = tf.searchsorted(self._sorted_sources, index)
        position = tf.minimum(position, len(self.poisons) - 1)
        found = tf.equal(tf.gather(self._sorted_sources, position), index)
        return tf.where(found, tf.gather(self._row_of_sorted, position), -1)

    def _poison_examples(self, x, labels, plan):
        if len(self.poisons) == 0:
            return x, labels
        reached = tf.reduce_any(tf.equal(plan, self._first_row))
        count_pass = self._passes.assign_add(tf.cast(reached, tf.int64))
        with tf.control_dependencies([count_pass]):
            replaced = self._is_injected(plan)
        # Only the replaced rows are written (a scatter), so the work per
        # block is one copy plus the poisons, not a gather and a select over
        # every row.
        positions = tf.where(replaced)
        poison_rows = tf.gather_nd(plan, positions)
        images = tf.cast(tf.gather(self._images, poison_rows), x.dtype)
        x_new = tf.tensor_scatter_nd_update(x, positions, images)
        labels_new = tf.where(replaced, tf.gather(self._labels, tf.maximum(plan, 0)), labels)
        return x_new, labels_new

    def _rows_written(self, plan):
        return plan >= 0

    def _check_image_spec(self, image_shape, dtype):
        expected = self.poisons.images.shape[1:]
        if tuple(image_shape) != tuple(expected):
            raise ValueError(
                f"Expected images of shape {expected} like the poisons. "
                f"Received: images of shape {tuple(image_shape)}"
            )
        if np.dtype(dtype) != self.poisons.images.dtype:
            raise ValueError(
                f"Expected images of dtype {self.poisons.images.dtype} like the "
                f"poisons. Received: images of dtype {np.dtype(dtype)}"
            )

    def _check_size(self, num_examples):
        if len(self.poisons):
            largest = int(self.poisons.source_indices.max())
            if largest >= num_examples:
                raise ValueError(
                    f"Expected the poisons' source indices to be < the number "
                    f"of examples ({num_examples}). Received: source index {largest}"
                )

    def transform(
        self, dataset, num_examples=None, batched=None, with_mask=False, image_key=None
    ):
        """Injects the poisons into a `tf.data.Dataset`; see `PoisoningAttack`.

        With `keep_clean=False` (unbatched datasets only) the result holds
        the poisons alone, in stream order.
        """
        if not self.keep_clean:
            layout = streams.describe(
                dataset, caller="InjectPoisons", batched=batched, image_key=image_key
            )
            if layout.batched:
                raise ValueError(
                    "Expected an unbatched dataset with keep_clean=False (the "
                    "poisons are taken out one by one). Apply InjectPoisons before "
                    "`batch`."
                )
        poisoned = super().transform(
            dataset, num_examples, batched, with_mask, image_key=image_key
        )
        if self.keep_clean:
            return poisoned
        only = poisoned.enumerate().filter(
            lambda index, element: self._example_plan(index[None], None)[0] >= 0
        )
        only = only.map(lambda index, element: element)
        # Not assert_cardinality: under tf.data service's distributed_epoch the
        # workers left without the one split would fail it (see as_one_split).
        return streams.as_one_split(only, cardinality=len(self.poisons))

    def poison(self, x, y):
        """Injects into NumPy arrays; returns `(x, y, mask)`.

        With `keep_clean=False` only the poisons' rows are returned (in
        index order), and the mask has one entry per returned row.
        """
        x_new, y_new, mask = super().poison(x, y)
        if self.keep_clean:
            return x_new, y_new, mask
        keep = np.sort(self.poisons.source_indices)
        return x_new[keep], y_new[keep], mask[keep]

    def get_config(self):
        return {
            "poisons": self.poisons.get_config(),
            "keep_clean": self.keep_clean,
            "num_classes": self.num_classes,
        }

