"""How a `tf.data` stream is laid out, read from facts and never guessed.

Every transform of the library that acts on a user's stream (the attacks,
`Sanitize`) first asks this module three questions about it:

* **What is an element?** `(x, y)` or `(x, y, sample_weight)`, the element
  structures Keras' `fit` accepts, with `x` a tensor or, for a multi-input
  model, a dict or tuple of tensors of which one holds the images
  (`image_key=`, or the only image-shaped entry).
* **Is it batched, and how are labels written?** Sparse `()`, a column
  `(1,)` (what `keras.datasets.cifar10.load_data()` returns) or one-hot
  `(num_classes,)`, per example. This is decided from facts that cannot be
  read two ways: the label's rank, the image's rank (a rank-4 image tensor
  is a batch, a rank-1 one a single flat example), a first axis the image
  and the label do not share (so it is no batch axis), and the pipeline
  itself (a `batch` op after the last `unbatch`, or elements that come
  straight from `from_tensor_slices`, a file reader or `range`). A stream
  that none of these settles raises, naming the argument (`batched=`) that
  does.
* **Is the order the one the data has?** Transforms keyed on an example's
  position must see the examples in the data's own order, once each. An
  order- or size-changing op upstream (`shuffle`, `repeat`, `shard`,
  `filter`, a non-deterministic parallel `map`/`interleave`,
  `sample_from_datasets`, `group_by_window`, tf.data service) is found by
  walking the pipeline, and raises with a message that says where to move
  the transform. Shuffling inside a Python generator, or files read in an
  order that changes between runs, happen outside tf.data and cannot be seen.
  Downstream, the transform's own pipeline is kept in one piece
  (`as_one_split`), so that tf.data service's `distributed_epoch`, which
  divides a pipeline's sources between workers, runs it whole on one worker.

`StreamLayout.split` and `StreamLayout.join` take an element apart into
`(images, labels, rest)` and put it back, so a transform touches only the
images and labels and everything else passes through untouched.
"""

import dataclasses

import numpy as np
import tensorflow as tf

SPARSE = "sparse"
COLUMN = "column"
ONE_HOT = "one_hot"
LABEL_FORMATS = (SPARSE, COLUMN, ONE_HOT)

# Pipeline ops that put examples in another order, repeat or drop them.
# (tf.data class name -> what the user wrote.)
_ORDER_CHANGING = {
    "_ShuffleDataset": "shuffle",
    "_ShardDataset": "shard",
    "_FilterDataset": "filter",
    "_DirectedInterleaveDataset": "sample_from_datasets / choose_from_datasets",
    "_GroupByWindowDataset": "group_by_window / bucket_by_sequence_length",
    "_GroupByReducerDataset": "group_by_reducer",
    "_RejectionResampleDataset": "rejection_resample",
    "_RandomDataset": "Dataset.random (which ClassPatternSwap draws from: apply attacks before defences)",
}
# Matched by prefix, since tf.data renames these with each version of the op
# (`_DataServiceDatasetV2` in TF 2.21, from `distribute` and `from_dataset_id`).
_ORDER_CHANGING_PREFIXES = {
    "_DataServiceDataset": "tf.data.experimental.service.distribute",
}
# Ops that build datasets in a function, and the graph ops (by prefix) that
# give the examples a random order in what those functions build.
_DATASET_BUILDERS = {
    "_FlatMapDataset": "flat_map",
    "_InterleaveDataset": "interleave",
    "_ParallelInterleaveDataset": "interleave",
    "_LegacyParallelInterleaveDataset": "parallel_interleave",
}
_RANDOM_ORDER_OPS = {
    "ShuffleDataset": "shuffle",
    "ShuffleAndRepeatDataset": "shuffle",
    "RandomDataset": "Dataset.random",
    "DirectedInterleaveDataset": "sample_from_datasets",
    "DataServiceDataset": "tf.data.experimental.service",
}
_BATCHING = (
    "_BatchDataset",
    "_PaddedBatchDataset",
    "_ParallelBatchDataset",
    "_MapAndBatchDataset",
    "_RebatchDataset",
    "_DenseToSparseBatchDataset",
)
# Sources whose elements are single rows: what comes out is one example.
_ROW_SOURCES = (
    "_TensorSliceDataset",
    "_SparseTensorSliceDataset",
    "_RangeDataset",
    "TFRecordDatasetV2",
    "TextLineDatasetV2",
    "FixedLengthRecordDatasetV2",
    "_TFRecordDataset",
    "_TextLineDataset",
    "_FixedLengthRecordDataset",
)
# Ops that neither batch nor unbatch, whatever their element is.
_PASS_THROUGH = (
    "_MapDataset",
    "_ParallelMapDataset",
    "_PrefetchDataset",
    "CacheDataset",
    "_CacheDataset",
    "_MemoryCacheDataset",
    "_OptionsDataset",
    "_AssertCardinalityDataset",
    "_TakeDataset",
    "_SkipDataset",
    "_RepeatDataset",
    "_ShuffleDataset",
    "_ShardDataset",
    "_FilterDataset",
    "_RestructuredDataset",
    "_ModelDataset",
    "_MaxIntraOpParallelismDataset",
    "_PrivateThreadPoolDataset",
    "_IgnoreErrorsDataset",
    "_TakeWhileDataset",
    "_ScanDataset",
    "DatasetV1Adapter",
)


@dataclasses.dataclass(frozen=True)
class StreamLayout:
    """What an element of a stream is, and how to take it apart.

    Attributes:
        batched: whether elements are batches of examples.
        label_format: `"sparse"` (one class index per example), `"column"`
            (a `(1,)` vector per example, as from `keras.datasets`) or
            `"one_hot"` (a `(num_classes,)` row per example).
        label_width: the one-hot width, or `None` for the other formats.
        image_spec: the `tf.TensorSpec` of the images (batched or not).
        label_spec: the `tf.TensorSpec` of the labels.
        arity: 2 for `(x, y)`, 3 for `(x, y, sample_weight)`.
        image_key: where the images sit inside a dict or tuple `x`, or
            `None` when `x` is the images.
    """

    batched: bool
    label_format: str
    label_width: int
    image_spec: tf.TensorSpec
    label_spec: tf.TensorSpec
    arity: int = 2
    image_key: object = None

    def as_blocks(self):
        """The layout with a batch axis in front (blocks of an unbatched stream)."""
        return dataclasses.replace(self, batched=True)

    def split(self, element):
        """`(images, labels, rest)` of one element (TensorFlow values)."""
        x, y = element[0], element[1]
        images = x if self.image_key is None else x[self.image_key]
        return images, y, (x, tuple(element[2:]))

    def join(self, images, labels, rest):
        """The element with its images and labels replaced."""
        x, extras = rest
        if self.image_key is not None:
            if isinstance(x, dict):
                x = {**x, self.image_key: images}
            else:
                x = type(x)(
                    images if i == self.image_key else part for i, part in enumerate(x)
                )
        else:
            x = images
        return (x, labels, *extras)

    def class_indices(self, labels):
        """int32 class indices, `(B,)` or `()`, of labels in this format."""
        if self.label_format == ONE_HOT:
            return tf.argmax(labels, axis=-1, output_type=tf.int32)
        if self.label_format == COLUMN:
            labels = labels[..., 0]
        return tf.cast(labels, tf.int32)

    def write_labels(self, labels, new_indices, changed):
        """`labels` with the `changed` examples set to `new_indices`.

        Keeps the format, dtype and shape; untouched labels are the very
        same values. A one-hot row is relabelled by `swap_label_columns`,
        so a label-smoothed row stays smoothed (a hard row in a smoothed
        set would give every change away).
        """
        if self.label_format == ONE_HOT:
            # Unchanged rows keep their class: their `new_indices` may lie outside the row.
            kept = tf.where(changed, tf.cast(new_indices, tf.int32), self.class_indices(labels))
            return tf.where(changed[..., None], swap_label_columns(labels, kept), labels)
        if self.label_format == COLUMN:
            new = tf.cast(new_indices, labels.dtype)[..., None]
            return tf.where(changed[..., None], new, labels)
        return tf.where(changed, tf.cast(new_indices, labels.dtype), labels)


def swap_label_columns(rows, new_indices):
    """One-hot (or soft) label rows relabelled to `new_indices` by a column swap.

    Each row's entries at its current class (its argmax) and at its new
    class trade places: a hard one-hot row becomes exactly the new class's
    one-hot row, a label-smoothed row `(1 - ε + ε/K at a, ε/K elsewhere)`
    becomes the smoothed row of the new class, and a row already of its new
    class is unchanged. Works on one row `(K,)` or a batch `(B, K)`, in any
    dtype; NumPy inputs are accepted (a tensor is returned).

    Args:
        rows: label rows, `(K,)` or `(B, K)`.
        new_indices: int class indices, `()` or `(B,)`.

    Returns:
        A tensor of the rows' shape and dtype.
    """
    rows = tf.convert_to_tensor(rows)
    new_indices = tf.cast(new_indices, tf.int32)
    old_indices = tf.argmax(rows, axis=-1, output_type=tf.int32)
    batch_dims = rows.shape.rank - 1
    old_values = tf.gather(rows, old_indices[..., None], batch_dims=batch_dims)
    new_values = tf.gather(rows, new_indices[..., None], batch_dims=batch_dims)
    columns = tf.range(tf.shape(rows)[-1], dtype=tf.int32)
    at_old = tf.equal(columns, old_indices[..., None])
    at_new = tf.equal(columns, new_indices[..., None])
    return tf.where(at_new, old_values, tf.where(at_old, new_values, rows))


def array_label_format(y, num_classes=None, name="y"):
    """The format of NumPy labels `(n,)`, `(n, 1)` or `(n, K)`, or a clear error.

    Returns:
        `(label_format, label_width)` as in `StreamLayout`.
    """
    y = np.asarray(y)
    return _example_label_format(y.shape[1:], y.dtype, num_classes, name)


def _example_label_format(example_shape, dtype, num_classes, name="y"):
    example_shape = tuple(example_shape)
    if not np.issubdtype(np.dtype(dtype), np.number) or np.issubdtype(
        np.dtype(dtype), np.complexfloating
    ):
        raise TypeError(
            f"Expected `{name}` to hold class indices or one-hot rows of an "
            f"integer or float dtype. Received: labels of dtype {np.dtype(dtype)}"
            + (" (cast them, e.g. y.astype('int64'))" if np.dtype(dtype) == bool else "")
        )
    if example_shape == ():
        return SPARSE, None
    if example_shape == (1,):
        return COLUMN, None
    if len(example_shape) == 1:
        width = example_shape[0]
        if width is None:
            raise ValueError(
                f"Expected one-hot labels of a known width. Received: labels "
                f"of shape (batch, None) in `{name}`; set the width with "
                "`dataset.map` or `tf.ensure_shape`."
            )
        if num_classes is not None and width != num_classes:
            raise ValueError(
                f"Expected one-hot labels of width num_classes={num_classes}. "
                f"Received: labels of width {width}"
            )
        return ONE_HOT, int(width)
    raise ValueError(
        f"Expected each example's label `{name}` to be sparse (shape ()), a "
        f"column (shape (1,)) or one-hot (shape (num_classes,)). Received: "
        f"a label of shape {example_shape}"
    )


def describe(dataset, *, caller, batched=None, image_key=None, num_classes=None):
    """The `StreamLayout` of a dataset, or an error that says what to pass.

    Args:
        dataset: the `tf.data.Dataset` a transform is applied to.
        caller: the transform's name, for error messages.
        batched: `True`, `False` or `None` (decide from the stream's facts).
        image_key: the key (dict) or position (tuple) of the images inside
            a multi-input `x`, or `None` to take the only image-shaped one.
        num_classes: the number of classes, or `None`, checked against a
            one-hot width.

    Returns:
        A `StreamLayout`.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"Expected `dataset` to be a tf.data.Dataset of (x, y) pairs. "
            f"Received: dataset of type {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    if not (isinstance(spec, (tuple, list)) and len(spec) in (2, 3)):
        hint = ""
        if isinstance(spec, dict):
            hint = (
                " For a dict dataset (e.g. from tfds without as_supervised=True) "
                'use dataset.map(lambda d: (d["image"], d["label"])) first.'
            )
        raise TypeError(
            f"{caller}: expected a dataset whose elements are (x, y) pairs or "
            f"(x, y, sample_weight) triples, as Keras' fit takes. Received: "
            f"element_spec={spec}.{hint}"
        )
    x_spec, y_spec = spec[0], spec[1]
    for extra in spec[2:]:
        if not isinstance(extra, tf.TensorSpec):
            raise TypeError(
                f"{caller}: expected sample weights to be a tensor. Received: "
                f"element_spec={spec}"
            )
    if not isinstance(y_spec, tf.TensorSpec):
        raise TypeError(
            f"{caller}: expected the labels (the element's second part) to be "
            f"a tensor. Received: {y_spec}"
        )
    if batched is not None and not isinstance(batched, bool):
        raise TypeError(f"Expected `batched` to be a bool or None. Received: batched={batched!r}")

    candidates = _image_candidates(x_spec, image_key, caller)
    if batched is None:
        batched = _decide_batched(candidates, y_spec, dataset, caller)
    image_key, image_spec = _choose_image(candidates, batched, image_key, caller)
    example_label_shape = y_spec.shape[1:] if batched else y_spec.shape
    if y_spec.shape.rank is None or (batched and y_spec.shape.rank == 0):
        raise ValueError(
            f"{caller}: expected labels of shape (batch,), (batch, 1) or "
            f"(batch, num_classes) with batched=True. Received: label spec {y_spec}"
        )
    label_format, width = _example_label_format(
        example_label_shape, y_spec.dtype.as_numpy_dtype, num_classes
    )
    return StreamLayout(
        batched=batched,
        label_format=label_format,
        label_width=width,
        image_spec=image_spec,
        label_spec=y_spec,
        arity=len(spec),
        image_key=image_key,
    )


def _image_candidates(x_spec, image_key, caller):
    """`[(key, spec)]` of the parts of `x` that may hold the images."""
    if isinstance(x_spec, tf.TensorSpec):
        if image_key is not None:
            raise ValueError(
                f"{caller}: `image_key` is for a dict or tuple `x`. Received: "
                f"image_key={image_key!r} with x of spec {x_spec}"
            )
        return [(None, x_spec)]
    if isinstance(x_spec, dict):
        items = list(x_spec.items())
    elif isinstance(x_spec, (tuple, list)):
        items = list(enumerate(x_spec))
    else:
        raise TypeError(
            f"{caller}: expected `x` to be a tensor, or a dict or tuple of "
            f"tensors for a multi-input model. Received: {x_spec}"
        )
    if image_key is not None:
        found = [(k, s) for k, s in items if k == image_key]
        if not found:
            raise ValueError(
                f"{caller}: expected `image_key` to name a part of `x`. "
                f"Received: image_key={image_key!r}; x has {[k for k, _ in items]}"
            )
        items = found
    nested = [k for k, s in items if not isinstance(s, tf.TensorSpec)]
    if nested:
        raise TypeError(
            f"{caller}: expected `x` to be a tensor or a flat dict or tuple of "
            f"tensors. Received: nested inputs {nested} in x={x_spec}; flatten "
            "them with `dataset.map` first."
        )
    if not items or any(not isinstance(s, tf.TensorSpec) for _, s in items):
        raise TypeError(
            f"{caller}: expected the images to be a dense tensor. Received: x={x_spec}"
        )
    return items


def _choose_image(candidates, batched, image_key, caller):
    if len(candidates) == 1 and (candidates[0][0] is None or image_key is not None):
        return candidates[0]
    # An image has at least two axes of its own (height, width).
    least = 3 if batched else 2
    images = [(k, s) for k, s in candidates if s.shape.rank is not None and s.shape.rank >= least]
    if len(images) != 1:
        raise ValueError(
            f"{caller}: cannot tell which input of `x` holds the images: "
            f"{[k for k, _ in images] or 'none'} of {[k for k, _ in candidates]} "
            "are image-shaped. Pass `image_key=` to name it."
        )
    return images[0]


def _decide_batched(candidates, y_spec, dataset, caller):
    rank = y_spec.shape.rank
    if rank == 0:
        return False
    if rank == 2:
        return True
    if rank is not None and rank > 2:
        raise ValueError(
            f"{caller}: expected labels of shape (), (1,) or (num_classes,) per "
            f"example, or those with a batch axis in front. Received: label "
            f"spec {y_spec}"
        )
    if rank == 1:
        from_shapes = None
        ranks = {s.shape.rank for _, s in candidates}
        if len(candidates) == 1 and None not in ranks:
            (image_rank,) = ranks
            x_first, y_first = candidates[0][1].shape[0], y_spec.shape[0]
            if image_rank <= 1:
                from_shapes = False  # a single flat example; a batch of scalars is no image
            elif image_rank >= 4:
                from_shapes = True  # (batch, height, width, channels)
            elif x_first is not None and y_first is not None and x_first != y_first:
                from_shapes = False  # a batch axis would be shared by images and labels
        from_pipeline = pipeline_batching(dataset)
        if None not in (from_shapes, from_pipeline) and from_shapes != from_pipeline:
            # E.g. volumes (depth, height, width, channels) sliced one per
            # example: the shapes read as a batch, the pipeline as examples.
            read = {True: "batches", False: "single examples"}
            raise ValueError(
                f"{caller}: the dataset reads two ways: its element shapes (x "
                f"{[s for _, s in candidates]}, labels {y_spec}) read as "
                f"{read[from_shapes]}, its pipeline as {read[from_pipeline]}. "
                "Pass `batched=True` or `batched=False`."
            )
        for answer in (from_shapes, from_pipeline):
            if answer is not None:
                return answer
    raise ValueError(
        f"{caller}: cannot tell whether the dataset is batched: labels of spec "
        f"{y_spec} with x of spec {[s for _, s in candidates]} read both as one "
        "example and as a batch, and the pipeline does not say. Pass "
        "`batched=True` or `batched=False`."
    )


def _prefixed(name, prefixes):
    """The user-facing name of the first prefix `name` starts with, or `None`."""
    for prefix, user_name in prefixes.items():
        if name.startswith(prefix):
            return user_name
    return None


# The attribute by which `as_one_split` marks its dataset with the pipeline it reads.
_WHOLE = "_keras_poison_whole"
_DROPS = "_keras_poison_drops"


def _inputs(node):
    """What a dataset reads: tf.data's record, or the pipeline inside `as_one_split`."""
    whole = getattr(node, _WHOLE, None)
    if whole is not None:
        return [whole]
    return node._inputs()  # tf.data's record of what a dataset reads


def as_one_split(pipeline, unbatch=False, cardinality=None):
    """`pipeline` as one piece that tf.data service's dynamic sharding cannot divide.

    Position-keyed transforms (the attacks, `Sanitize(key="index")`) count the
    examples they see. Under `tf.data.experimental.service.distribute` with
    `processing_mode="distributed_epoch"` (`ShardingPolicy.DYNAMIC`) the
    dispatcher divides each *source* of the pipeline it is given into splits
    (one per row of `from_tensor_slices`, per file, per value of `range`) and
    hands them to whichever worker asks first, while `enumerate` replicates
    its own `range` on every worker. A worker's count then says nothing about
    which example it holds: a running batch offset starts at 0 on each worker,
    and `enumerate`'s indices are paired with whatever rows the worker was
    handed. The dispatcher makes splits from the datasets tf.data records as a
    dataset's inputs, never from a dataset captured by a function, so here the
    pipeline is read by `flat_map` from a one-element source: there is one
    split to hand out, one worker runs the whole pipeline in its own order, and
    the stream is exactly the one without the service (the other workers have
    nothing to give). `parallel_epochs` and static sharding never divide
    sources (they run the whole pipeline and shard what comes out), so they
    are unchanged.

    tf.data applies its static optimizations (`map_parallelization`,
    `parallel_batch`, `inject_prefetch`, ...) to the pipeline an iterator is
    made of, not to datasets inside functions, so the pipeline is finalized
    here with its own options (without it, a user's sequential `map` upstream
    is no longer parallelized: 2x slower, measured). `flat_map` forgets the
    cardinality and the `tf.data.Options`; both are kept.
    `assert_cardinality` cannot restore the cardinality, since it would
    fail on the workers left with nothing; instead the stream is read with
    `take(n)` from `choose_from_datasets` that always chooses the pipeline
    and stops when it ends (`stop_on_empty_dataset=True`), next to an
    infinite dataset that is never read: infinite cardinality, then `n`.
    tf.data itself replicates the choice dataset on every worker. These cost
    a few steps and a `map` per element of `pipeline` (a block or a batch:
    unbatch here to keep them off each example). This module's walks (`upstream`,
    `pipeline_batching`, `batching_source`) see the pipeline inside.

    Args:
        pipeline: a `tf.data.Dataset` of dense tensors.
        unbatch: bool, whether to unbatch the elements of `pipeline`.
        cardinality: the number of elements of the result, or `None`: the
            cardinality of `pipeline`, or unknown if `unbatch`.

    Returns:
        A `tf.data.Dataset` with the elements of `pipeline` (unbatched if
        asked), in its order, with the cardinality and options.
    """
    # tf.data optimizes a pipeline (parallel maps, fused batches, prefetch)
    # when an iterator is made of it, never inside a function: done here.
    finalized = tf.data.experimental.from_variant(
        tf.raw_ops.FinalizeDataset(
            input_dataset=pipeline._variant_tensor,
            output_types=pipeline._flat_types,
            output_shapes=pipeline._flat_shapes,
        ),
        pipeline.element_spec,
    )
    whole = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).flat_map(
        lambda _: finalized
    )
    result = _mark(whole, pipeline)
    if cardinality is None and not unbatch:
        cardinality = int(pipeline.cardinality())
    if cardinality is not None and (
        cardinality >= 0 or cardinality == tf.data.INFINITE_CARDINALITY
    ):
        spec = pipeline.element_spec
        never = tf.data.Dataset.random(seed=0).map(
            lambda _: tf.nest.map_structure(_never_read, spec)
        )
        chosen = tf.data.Dataset.choose_from_datasets(
            [whole, never], tf.data.Dataset.range(1).repeat(), stop_on_empty_dataset=True
        )
        # The op behind `choose_from_datasets` (of two or more datasets) tells
        # the ops after it no shapes, and a `concatenate` downstream then fails
        # ("Incompatible shapes at component 0", TF 2.21, also with
        # `sample_from_datasets`); a `map` that is not a no-op restates them.
        chosen = chosen.map(
            lambda *parts: tf.nest.map_structure(
                lambda part, part_spec: tf.ensure_shape(part, part_spec.shape),
                parts if isinstance(spec, tuple) else parts[0],
                spec,
            )
        )
        result = _mark(chosen, result)
    if unbatch:
        result = _mark(result.unbatch(), result)
    if cardinality is not None and cardinality >= 0:
        result = _mark(result.take(cardinality), result)
    options = pipeline.options()
    if options != tf.data.Options():
        result = _mark(result.with_options(options), result)
    return result


def _mark(node, inner):
    """Marks a dataset made by `as_one_split` with the one it reads."""
    setattr(node, _WHOLE, inner)
    return node


def dropping(dataset, name):
    """Marks `dataset` as one that drops examples where the walks cannot see it.

    A transform that drops examples inside its blocks (`Sanitize`'s drop, a
    `boolean_mask` in a `map`) changes the stream's positions as a `filter`
    does; `order_changes` reports it under `name`, so position-keyed
    transforms downstream refuse it as they refuse a `filter`.
    """
    setattr(dataset, _DROPS, name)
    return dataset


def _never_read(spec):
    """A value of `spec` (for a dataset that is never read)."""
    if spec.shape.rank is None:
        return tf.zeros([], spec.dtype)
    return tf.zeros([0 if d is None else d for d in spec.shape], spec.dtype)


def upstream(dataset):
    """The datasets of a pipeline, from `dataset` back to its sources.

    Walks tf.data's own record of each dataset's inputs (what the dataset
    was built from), and into `as_one_split`; functions passed to
    `map`/`flat_map` are not entered.
    """
    seen, order, stack = set(), [], [dataset]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        try:
            inputs = _inputs(node)
        except Exception:  # a dataset type that keeps no record
            inputs = []
        stack.extend(inputs)
    return order


def pipeline_batching(dataset):
    """`True`/`False` when the pipeline shows whether elements are batches.

    `True` when a batching op comes after the last `unbatch`; `False` when
    the elements come from a source of single rows with no batching op on
    the way; `None` when the pipeline does not say (e.g. `from_generator`,
    `from_tensors`).
    """
    node = dataset
    while True:
        name = type(node).__name__
        if name in _BATCHING:
            return True
        if name == "_UnbatchDataset" or name in _ROW_SOURCES:
            return False
        if name not in _PASS_THROUGH and not hasattr(node, _WHOLE):
            return None
        inputs = _inputs(node)
        if len(inputs) != 1:
            return None
        node = inputs[0]


@dataclasses.dataclass(frozen=True)
class BatchingSource:
    """What a batched pipeline was made from: a `batch` op over known data.

    Attributes:
        num_examples: the size of the dataset the `batch` op reads.
        batch_size: its batch size.
        drop_remainder: whether it drops the last, smaller batch.
    """

    num_examples: int
    batch_size: int
    drop_remainder: bool

    def batch_checks(self, offset, size, caller, remedy=None):
        """`[(ok, message)]`: a batch at `offset` has the size `batch` gives it.

        An op between `batch` and the transform that drops examples from a
        batch (a `map` that slices, `Sanitize(action="drop")`) would
        otherwise leave the count read from the pipeline wrong.
        """
        full = tf.constant(self.batch_size, tf.int64)
        left = tf.constant(self.num_examples, tf.int64) - offset
        expected = full if self.drop_remainder else tf.minimum(full, left)
        return [
            (
                tf.equal(tf.cast(size, tf.int64), expected),
                f"{caller}: a batch's size differs from what "
                f"batch({self.batch_size}) of the {self.num_examples} examples "
                "it reads gives: an op between `batch` and this transform "
                "changed the batches, so the size read from the pipeline does "
                "not hold. "
                + (remedy or "Pass the true size as `num_examples` (or num_examples='count')."),
            )
        ]


def batching_source(dataset):
    """The `BatchingSource` of a batched pipeline, or `None` when unknown.

    Known when a `batch` (or `padded_batch`) op reads a dataset of known
    size and only ops that map each batch to one batch follow it (map,
    scan, prefetch, cache, options). Whether those keep every batch whole
    cannot be seen; `BatchingSource.batch_checks` checks it on each batch.
    """
    node = dataset
    while type(node).__name__ not in _BATCHING:
        if type(node).__name__ not in (
            "_MapDataset", "_ParallelMapDataset", "_PrefetchDataset", "_ScanDataset",
            "CacheDataset", "_CacheDataset", "_MemoryCacheDataset",
            "_OptionsDataset", "_AssertCardinalityDataset", "_ModelDataset",
        ) and not hasattr(node, _WHOLE):
            return None
        inputs = _inputs(node)
        if len(inputs) != 1:
            return None
        node = inputs[0]
    batch_size = _constant(getattr(node, "_batch_size", None))
    drop = getattr(node, "_drop_remainder", None)
    drop = None if drop is None else bool(_constant(drop))
    inputs = node._inputs()
    if batch_size is None or drop is None or len(inputs) != 1:
        return None
    size = int(inputs[0].cardinality())
    if size < 0:
        return None
    return BatchingSource(size, int(batch_size), drop)


def order_changes(dataset):
    """What upstream of `dataset` changes the examples' order or number.

    Returns:
        A list of the user-facing names of those ops (empty when the
        stream yields the data's examples once each, in their own order).
    """
    found = []
    nodes = upstream(dataset)
    for node in nodes:
        name = type(node).__name__
        if hasattr(node, _DROPS):
            found.append(getattr(node, _DROPS))
        if hasattr(node, _WHOLE):
            continue  # made by `as_one_split`; what it reads is walked
        if name == "_ShardDataset" and _constant(getattr(node, "_num_shards", None)) == 1:
            continue  # shard(1, 0) keeps every example
        if name in _ORDER_CHANGING:
            found.append(_ORDER_CHANGING[name])
        elif _prefixed(name, _ORDER_CHANGING_PREFIXES):
            found.append(_prefixed(name, _ORDER_CHANGING_PREFIXES))
        elif name == "_RepeatDataset":
            count = _constant(getattr(node, "_count", None))
            if count != 1:
                found.append(f"repeat({'' if count in (None, -1) else count})")
        elif name in ("_ParallelMapDataset", "_ParallelBatchDataset"):
            if getattr(node, "_deterministic", "default") == "false":
                found.append("map(..., deterministic=False)")
        elif name in ("_ParallelInterleaveDataset", "_LegacyParallelInterleaveDataset"):
            if not _interleave_is_deterministic(node):
                found.append("interleave(..., deterministic=False)")
        if name in _DATASET_BUILDERS:
            inner = _random_order_ops_inside(node)
            if inner:
                found.append(f"{_DATASET_BUILDERS[name]} whose function uses {inner}")
    if _options_allow_reordering(dataset, nodes):
        found.append("Options.deterministic=False with a parallel op")
    return list(dict.fromkeys(found))


def _random_order_ops_inside(node):
    """What, inside the datasets a `flat_map`/`interleave` function builds
    or captures, orders the examples at random: `upstream` does not enter
    functions."""
    ops = set()
    for function in getattr(node, "_functions", lambda: [])():
        try:
            graph = function.function.graph.as_graph_def()
        except Exception:  # a function tf.data keeps no graph of
            continue
        ops |= _graph_ops(graph)
    # A dataset built outside the function and captured by it enters as a
    # tensor; the node's serialized graph holds it (and the node's inputs,
    # whose ops the upstream walk reports itself). Serializing copies every
    # constant upstream (a `from_tensor_slices` of the whole data set), so
    # only when a dataset is captured.
    if _captures_a_dataset(node):
        ops |= _serialized_ops(node) - set().union(*[_serialized_ops(i) for i in _inputs(node)])
    names = {
        user_name
        for op in ops
        for prefix, user_name in _RANDOM_ORDER_OPS.items()
        if op.startswith(prefix)
    }
    return ", ".join(f"`{n}`" for n in sorted(names))


def _captures_a_dataset(node):
    """Whether a `flat_map`/`interleave` function captures a dataset (a variant tensor)."""
    for function in getattr(node, "_functions", lambda: [])():
        try:
            captured = function.function.captured_inputs
        except Exception:  # cannot tell: look at the serialized graph
            return True
        if any(getattr(t, "dtype", None) == tf.variant for t in captured):
            return True
    return False


def _graph_ops(graph):
    ops = {n.op for n in graph.node}
    return ops | {n.op for f in graph.library.function for n in f.node_def}


def _serialized_graph(node):
    """A dataset's serialized `GraphDef`, or `None` if it cannot be had."""
    from tensorflow.core.framework import graph_pb2

    try:
        graph = graph_pb2.GraphDef()
        graph.ParseFromString(node._as_serialized_graph().numpy())
    except Exception:
        return None
    return graph


def _serialized_ops(node):
    """The op names of a dataset's serialized graph (empty if it cannot be had)."""
    graph = _serialized_graph(node)
    return set() if graph is None else _graph_ops(graph)


def _constant(value):
    try:
        return int(value.numpy()) if hasattr(value, "numpy") else value
    except Exception:
        return None


def _interleave_is_deterministic(node):
    # The flag lives only in the op: read it from the dataset's graph.
    graph = _serialized_graph(node)
    if graph is None:
        return True  # cannot be read; documented as unseen
    return not any(
        "ParallelInterleave" in op.op
        and "deterministic" in op.attr
        and op.attr["deterministic"].s == b"false"
        for op in graph.node
    )


def _options_allow_reordering(dataset, nodes):
    try:
        deterministic = dataset.options().deterministic
    except Exception:
        return False
    if deterministic is not False:
        return False
    parallel = ("_ParallelMapDataset", "_ParallelBatchDataset", "_ParallelInterleaveDataset")
    return any(
        type(n).__name__ in parallel and getattr(n, "_deterministic", "default") == "default"
        for n in nodes
    )


def check_positional(dataset, *, caller, remedy):
    """Raises when `dataset` does not yield its data once each, in order.

    Args:
        dataset: the stream a position-keyed transform is applied to.
        caller: the transform's name.
        remedy: what the user can do instead, appended to the message.
    """
    changes = order_changes(dataset)
    if changes:
        raise ValueError(
            f"{caller} keys each example on its position in the stream, but "
            f"the stream passes through {', '.join(f'`{c}`' for c in changes)} "
            "first: the examples then arrive in another order (or more or "
            "fewer times) than in the data, so the result would differ from "
            f"the same transform on the arrays, and between epochs. {remedy} "
            "(`Dataset.list_files` shuffles unless given shuffle=False.)"
        )


def count_examples(dataset, layout):
    """Counts the examples of a stream in one pass (for an exact rate)."""
    if not layout.batched:
        return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))

    def add(n, *element):
        return n + tf.cast(tf.shape(element[1])[0], tf.int64)

    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, el: add(n, *el)))


def expect_size(dataset, num_examples, *, batched, caller, remedy):
    """`dataset`, unchanged, raising unless it holds exactly `num_examples` examples.

    For a stream whose size the pipeline does not show (a generator, a
    `skip` after `batch`) but the user states. More examples are caught on
    the first one past the count; fewer only at the end of the stream, so
    the check runs when the last element has been read. Without it a
    stated size larger than the real one would pick `round(rate * n)`
    examples of which some never arrive: a lower rate than reported.

    Args:
        dataset: a `tf.data.Dataset` of examples or of batches of them.
        num_examples: int, the size the user stated.
        batched: bool, whether elements are batches (labels at position 1).
        caller: the transform's name, for the message.
        remedy: what to do instead, appended to the message.
    """
    message = (
        f"{caller}: the stream does not hold num_examples={num_examples} "
        f"examples. {remedy}"
    )
    spec = dataset.element_spec
    tensors = tf.nest.flatten(spec)
    if not all(isinstance(s, tf.TensorSpec) for s in tensors):
        if not batched:
            # tf.data's own check: "expected to contain N elements but contained only M".
            return dataset.apply(tf.data.experimental.assert_cardinality(num_examples))
        raise TypeError(
            f"{caller}: a stated `num_examples` on a batched stream is checked "
            "with dense tensors only. Received: an element spec of "
            f"{spec}. Pass num_examples='count'."
        )
    # A marked, empty last element: when the scan reaches it, everything is counted.
    empty = tf.nest.pack_sequence_as(
        spec,
        [
            tf.zeros(([0] + [d or 0 for d in s.shape[1:]]) if batched else
                     [d or 0 for d in s.shape], s.dtype)
            for s in tensors
        ],
    )
    last = tf.data.Dataset.from_tensors((empty, True))
    marked = dataset.map(lambda *element: (_one(element), False)).concatenate(last)

    def count(seen, *marked_element):
        element, is_last = _one(marked_element)
        if batched:
            rows = tf.cast(tf.shape(tf.nest.flatten(element[1])[0])[0], tf.int64)
        else:
            rows = tf.cast(tf.logical_not(is_last), tf.int64)  # the marker counts none
        total = seen + rows
        ok = tf.logical_and(
            total <= num_examples, tf.logical_or(tf.logical_not(is_last), tf.equal(seen, num_examples))
        )
        with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
            total = tf.identity(total)
        return total, (element, is_last)

    checked = (
        marked.scan(tf.constant(0, tf.int64), count)
        .take_while(lambda element, is_last: tf.logical_not(is_last))
        .map(lambda element, is_last: element)
    )
    # The scan guarantees the count (and fails first, with the message above);
    # this only tells tf.data the size again.
    cardinality = num_examples if not batched else int(dataset.cardinality())
    if cardinality >= 0:
        checked = checked.apply(tf.data.experimental.assert_cardinality(cardinality))
    return checked


def _one(element):
    """`map` hands a tuple element over as several arguments; repack them."""
    return element if len(element) > 1 else element[0]
