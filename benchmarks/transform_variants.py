"""What each change to the stream transforms gained (issue 18 §1), in one run.

Each library transform is timed next to a copy of itself with one change
undone, on batched CIFAR-shaped streams of 50,000 examples (`batch(256)`,
the size stated), float32 and uint8, against the bare batched pipeline:
warm-up, interleaved repeats, median (BENCHMARKS.md).

* `ClassPatternNoise`, kernel: the library's (the pattern table has an
  identity row that unselected examples add; integer images computed in
  integers; range check in the images' dtype) against the kernel before
  (`tf.where` of a per-row mask broadcast over the pixels, integer images
  computed in float32).

(Numbering batches by `enumerate` in a parallel map instead of the running
offset of a `scan` was measured with an earlier version of this script, at
commit 45b996c, and not kept: docs/benchmarks.md §1.)

Usage: python benchmarks/transform_variants.py [--repeats 7]
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine_info  # noqa: E402

N = 50_000
BATCH = 256


def variants():
    import numpy as np
    import tensorflow as tf

    from keras_poison import ClassPatternNoise
    from keras_poison import RandomFlip

    class SelectKernel(ClassPatternNoise):
        """The kernel before: a broadcast select, integers computed in float32."""

        def _poison_examples(self, x, labels, plan):
            low, high = self.resolved_value_range(x.dtype)
            compute = x.dtype if x.dtype.is_floating else tf.float32
            table = tf.cast(self._pattern_table(tuple(x.shape[1:]), x.dtype), compute)
            shifted = tf.cast(x, compute) + tf.gather(table, labels)
            poisoned = tf.cast(tf.clip_by_value(shifted, low, high), x.dtype)
            selected = tf.reshape(plan, [-1] + [1] * (len(x.shape) - 1))
            return tf.where(selected, poisoned, x), labels

        def _image_checks(self, x):
            low, high = self.resolved_value_range(x.dtype)
            values = tf.cast(x, x.dtype if x.dtype.is_floating else tf.float32)
            inside = tf.logical_and(tf.reduce_all(values >= low), tf.reduce_all(values <= high))
            return [(inside, "range")]

    rng = np.random.default_rng(0)
    y = (np.arange(N) % 10).astype(np.int64)
    pipelines = {}
    for dtype in ("float32", "uint8"):
        if dtype == "uint8":
            x, epsilon = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8), 8
        else:
            x, epsilon = rng.random((N, 32, 32, 3), dtype=np.float32), 8 / 255
        source = tf.data.Dataset.from_tensor_slices((x, y))
        pipelines[(dtype, "reference: bare batched pipeline")] = (
            lambda s=source: s.batch(BATCH))
        attacks = {
            "ClassPatternNoise, library kernel": ClassPatternNoise(10, epsilon=epsilon, seed=0),
            "ClassPatternNoise, kernel before (broadcast select)": SelectKernel(
                10, epsilon=epsilon, seed=0),
            "RandomFlip (label-only, for scale)": RandomFlip(0.2, 10, seed=0),
        }
        for name, attack in attacks.items():
            pipelines[(dtype, name)] = (
                lambda s=source, a=attack: a.transform(s.batch(BATCH), num_examples=N))
    return pipelines


def consume(dataset):
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "transform_variants.json"))
    args = parser.parse_args()
    pipelines = variants()
    for build in pipelines.values():
        consume(build())
    times = {key: [] for key in pipelines}
    for _ in range(args.repeats):
        for key, build in pipelines.items():
            times[key].append(consume(build()))
    rows = []
    for (dtype, name), values in times.items():
        reference = statistics.median(times[(dtype, "reference: bare batched pipeline")])
        rows.append({"dtype": dtype, "pipeline": name,
                     "examples_per_s": N / statistics.median(values),
                     "ratio": reference / statistics.median(values)})
    with open(args.out, "w") as f:
        json.dump({"command": "python benchmarks/transform_variants.py " + " ".join(sys.argv[1:]),
                   "date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "rows": rows},
                  f, indent=2)
    print("| dtype | pipeline | examples/s | ratio |\n|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['dtype']} | {row['pipeline']} | {row['examples_per_s']:,.0f} | "
              f"{row['ratio']:.2f} |")


if __name__ == "__main__":
    main()
