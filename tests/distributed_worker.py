"""One worker of a `MultiWorkerMirroredStrategy` cluster, for the distributed tests.

`tests/test_distributed_engines.py` starts two of these on localhost, each
with its own `TF_CONFIG` and no GPU, and compares what they write with the
single-process result. Usage:

    TF_CONFIG=... python tests/distributed_worker.py WORKDIR TASK_INDEX

`WORKDIR/inputs.npz` holds the data (`x`, `y`), the global batch size and
the weights of a tiny Dense classifier, and `WORKDIR/*.tfrecord` the same
examples in files (in the order of their names); the worker writes
`WORKDIR/worker<TASK_INDEX>.npz` with, for each case, every example its
replicas received (images, labels, is-poisoned flag), and the poisons it
crafted under the strategy.
"""

import os
import sys

if __name__ == "__main__":  # a worker process: no GPU, before TensorFlow starts
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_poison as kp  # noqa: E402


def tiny_classifier(image_shape, num_classes):
    """The Dense model the tests craft against (weights are loaded, not drawn)."""
    return keras.Sequential(
        [
            keras.Input(image_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )


def write_records(path, x, y):
    """Writes `(x, y)` float32 examples to a TFRecord file."""
    with tf.io.TFRecordWriter(path) as writer:
        for image, label in zip(x, y):
            feature = {
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=image.ravel())),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


def parse_record(image_shape):
    spec = {
        "x": tf.io.FixedLenFeature(image_shape, tf.float32),
        "y": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        return example["x"], example["y"]

    return parse


def stream_attacks(num_classes):
    """The attacks streamed through the strategy: position-keyed, label and image."""
    return {
        "random_flip": kp.RandomFlip(0.25, num_classes, seed=3),
        "targeted_flip": kp.TargetedFlip({0: 1, 1: 0, 2: 3}, 0.3, seed=5),
        "class_pattern": kp.ClassPatternNoise(num_classes, 0.1, seed=7, fraction=0.5),
    }


def supplanter(model):
    """The crafting attack: batches of 3 split unevenly over two replicas, and
    steps large enough that some seeds stop early (the mask of Algorithm 1)."""
    return kp.SupplanterPoison(
        model, supplanter=0, epsilon=0.2, steps=4, rate=0.2, batch_size=3, seed=11
    )


def _collect(strategy, distributed):
    """Every example the replicas of this worker receive, through `strategy.run`."""

    @tf.function(reduce_retracing=True)
    def step(element):
        def replica_fn(x, y, mask):
            # What a training step sees; the count is summed over all workers.
            return x, y, mask, tf.reduce_sum(tf.cast(mask, tf.int64))

        return strategy.run(replica_fn, args=element)

    parts = [[], [], []]
    poisoned_total = 0
    for element in distributed:
        x, y, mask, count = step(element)
        for part, value in zip(parts, (x, y, mask)):
            part.extend(t.numpy() for t in strategy.experimental_local_results(value))
        poisoned_total += int(strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))
    arrays = [np.concatenate(p) if p else np.zeros((0,)) for p in parts]
    return arrays, poisoned_total


def main(workdir, task_index):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    inputs = np.load(os.path.join(workdir, "inputs.npz"))
    x, y = inputs["x"], inputs["y"]
    global_batch = int(inputs["global_batch"])
    num_classes = int(inputs["num_classes"])
    out = {"num_replicas": strategy.num_replicas_in_sync}

    for name, attack in stream_attacks(num_classes).items():

        def dataset_fn(context, attack=attack):
            # The attack first, then this worker's shard, as the docs say.
            ds = tf.data.Dataset.from_tensor_slices((x, y))
            ds = attack.transform(ds, with_mask=True)
            ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
            return ds.batch(context.get_per_replica_batch_size(global_batch))

        distributed = strategy.distribute_datasets_from_function(dataset_fn)
        (xs, ys, ms), total = _collect(strategy, distributed)
        out.update({f"{name}_x": xs, f"{name}_y": ys, f"{name}_mask": ms})
        out[f"{name}_reduced_count"] = total

    # The one-line form: tf.distribute shards the (already poisoned) batches itself.
    auto = stream_attacks(num_classes)["random_flip"]
    ds = auto.transform(tf.data.Dataset.from_tensor_slices((x, y)), with_mask=True)
    distributed = strategy.experimental_distribute_dataset(ds.batch(global_batch))
    (xs, ys, ms), total = _collect(strategy, distributed)
    out.update({"auto_x": xs, "auto_y": ys, "auto_mask": ms, "auto_reduced_count": total})

    # The attack on batches (a running offset, kept in one piece by the
    # library), then tf.distribute shards and rebatches those batches.
    ds = auto.transform(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch),
        num_examples=len(x),
        with_mask=True,
    )
    distributed = strategy.experimental_distribute_dataset(ds)
    (xs, ys, ms), total = _collect(strategy, distributed)
    out.update({"batched_x": xs, "batched_y": ys, "batched_mask": ms})

    # Files, as tfds and most large pipelines read them: AUTO would shard the
    # files, but the attack's example index is no file source, so tf.distribute
    # falls back to sharding the poisoned batches.
    files = sorted(
        os.path.join(workdir, name) for name in os.listdir(workdir) if name.endswith(".tfrecord")
    )
    records = tf.data.TFRecordDataset(files).map(parse_record(x.shape[1:]))
    ds = auto.transform(records, num_examples=len(x), with_mask=True)
    distributed = strategy.experimental_distribute_dataset(ds.batch(global_batch))
    (xs, ys, ms), total = _collect(strategy, distributed)
    out.update({"files_x": xs, "files_y": ys, "files_mask": ms})

    # Crafting under the strategy: the model is built in its scope, as for training.
    with strategy.scope():
        model = tiny_classifier(x.shape[1:], num_classes)
        model.set_weights([inputs[f"weight_{i}"] for i in range(len(model.weights))])
        attack = supplanter(model)
        x_p, y_p, mask = attack.poison(x, y)
        seeds = attack.select_seeds(y)
        crafted = attack.craft(x[seeds], y[seeds], indices=seeds)
    out.update(
        {
            "supplanter_x": x_p,
            "supplanter_y": y_p,
            "supplanter_mask": mask,
            "craft_images": crafted.images,
            "craft_steps": crafted.steps_taken,
        }
    )
    np.savez(os.path.join(workdir, f"worker{task_index}.npz"), **out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
