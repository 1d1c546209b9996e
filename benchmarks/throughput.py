"""Transform overhead and peak memory of each attack on a CIFAR-shaped stream.

Ratios are measured side by side in one process (BENCHMARKS.md): the same
50,000-example pipeline with the attack vs with an identity `map` at the same
place, warm-up first, interleaved repeats, median. Two places are measured:

* unbatched: `from_tensor_slices -> attack -> batch(256)`;
* batched:   `from_tensor_slices -> batch(256) -> attack(num_examples=n)`.

Note: tf.data's optimizer removes a `map(lambda x, y: (x, y))` entirely, so
that reference is the bare pipeline. A second reference, an identity map that
is not optimized away (`tf.identity`), shows what any per-example map costs.

Peak memory: each configuration streams a synthetic 50,000-example CIFAR
stream generated on the fly (so the source holds nothing) in a fresh
subprocess, and reports its peak RSS; poisoned minus clean is the attack's
footprint.

Usage: python benchmarks/throughput.py [--examples 50000] [--repeats 5]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 256


def attack_factories(n, dtype="float32"):
    """Every stream transform of the library, each at a typical setting, as
    `name -> function` that builds it (a memory child builds only its own)."""
    import numpy as np

    from keras_poison import ClassPatternNoise
    from keras_poison import InjectPoisons
    from keras_poison import PoisonSet
    from keras_poison import RandomFlip
    from keras_poison import Sanitize
    from keras_poison import TargetedFlip

    rng = np.random.default_rng(1)
    cm_pairs = {0: 8, 8: 0, 1: 9, 9: 1, 2: 4, 4: 2, 3: 5, 5: 3, 6: 7, 7: 6}
    epsilon = 8 if dtype == "uint8" else 8 / 255
    # 10% of the examples: replaced by crafted poisons (as SupplanterPoison's
    # injection at alpha = 0.1), or flagged by a detector's report.
    count = n // 10
    sources = np.sort(rng.choice(n, count, replace=False))
    flagged = np.zeros(n, bool)
    flagged[sources] = True
    suggested = rng.integers(0, 10, n)

    def injection():
        images = rng.integers(0, 256, (count, 32, 32, 3)).astype(dtype)
        if dtype != "uint8":
            images = (images / 255).astype(dtype)
        return InjectPoisons(PoisonSet(images, np.zeros(count, "int64"), sources))

    return {
        "RandomFlip(0.2)": lambda: RandomFlip(0.2, 10, seed=0),
        "TargetedFlip(0.2, 5 pairs)": lambda: TargetedFlip(cm_pairs, rate=0.2, num_classes=10),
        f"ClassPatternNoise({'8' if dtype == 'uint8' else '8/255'})": lambda: ClassPatternNoise(
            10, epsilon=epsilon, seed=0
        ),
        "InjectPoisons(10%)": injection,
        "Sanitize(10%, relabel)": lambda: Sanitize(
            flagged, action="relabel", suggested_labels=suggested
        ),
        "Sanitize(10%, drop)": lambda: Sanitize(flagged),
    }


def make_attacks(n, dtype="float32"):
    return {name: build() for name, build in attack_factories(n, dtype).items()}


def consume(dataset):
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def source_arrays(n, dtype):
    import numpy as np

    rng = np.random.default_rng(0)
    if dtype == "uint8":
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    else:
        x = rng.random((n, 32, 32, 3), dtype=np.float32)
    return x, (np.arange(n) % 10).astype(np.int64)


def apply(transform, dataset, n, batched):
    """The transform on `dataset`; attacks on batches are told the size."""
    from keras_poison import Sanitize

    if batched and not isinstance(transform, Sanitize):
        return transform.transform(dataset, num_examples=n)
    return dataset.apply(transform)


def interleaved(pipelines, repeats):
    """Median seconds per pipeline: warm-up, then interleaved repeats."""
    import numpy as np

    for build in pipelines.values():  # warm-up: tracing, plan tables
        consume(build())
    times = {key: [] for key in pipelines}
    for _ in range(repeats):  # interleaved, so drift hits every pipeline alike
        for key, build in pipelines.items():
            times[key].append(consume(build()))
    return {key: float(np.median(t)) for key, t in times.items()}


def measure_throughput(n, repeats, dtypes):
    import tensorflow as tf

    rows = []
    for dtype in dtypes:
        x, y = source_arrays(n, dtype)
        source = tf.data.Dataset.from_tensor_slices((x, y))
        pipelines = {
            ("unbatched", "reference: identity map"): lambda: source.map(lambda a, b: (a, b)).batch(BATCH),
            ("unbatched", "reference: tf.identity map (kept)"): lambda: source.map(
                lambda a, b: (tf.identity(a), tf.identity(b))
            ).batch(BATCH),
            ("batched", "reference: identity map"): lambda: source.batch(BATCH).map(lambda a, b: (a, b)),
        }
        for name, attack in make_attacks(n, dtype).items():
            pipelines[("unbatched", name)] = lambda a=attack: apply(a, source, n, False).batch(BATCH)
            pipelines[("batched", name)] = lambda a=attack: apply(a, source.batch(BATCH), n, True)
        median = interleaved(pipelines, repeats)
        for (place, name), seconds in median.items():
            reference = median[(place, "reference: identity map")]
            rows.append({
                "dtype": dtype, "place": place, "pipeline": name,
                "examples_per_s": n / seconds, "ratio_vs_identity_map": reference / seconds,
            })
    return rows


def write_tfrecords(path, n):
    """CIFAR-shaped examples as PNG-encoded images in a TFRecord file."""
    import tensorflow as tf

    x, y = source_arrays(n, "uint8")
    with tf.io.TFRecordWriter(path) as writer:
        for image, label in zip(x, y):
            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[tf.io.encode_png(image).numpy()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


def measure_parallel_and_files(n, repeats, tmpdir):
    """The attack after a parallel map, and after decoding PNGs from a TFRecord.

    Share of the time = 1 - reference / with the attack: what the attack adds
    to a pipeline whose own work (a per-example map; file reading and PNG
    decoding) runs with `num_parallel_calls=AUTOTUNE`.
    """
    import tensorflow as tf

    path = os.path.join(tmpdir, "cifar_png.tfrecord")
    write_tfrecords(path, n)
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}

    def decode(record):
        example = tf.io.parse_single_example(record, spec)
        image = tf.ensure_shape(tf.io.decode_png(example["image"], channels=3), (32, 32, 3))
        return image, example["label"]

    def to_float(image, label):
        return tf.cast(image, tf.float32) / 255.0, label

    def files():
        records = tf.data.TFRecordDataset(path)
        return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).apply(
            tf.data.experimental.assert_cardinality(n))

    x, y = source_arrays(n, "uint8")
    memory = tf.data.Dataset.from_tensor_slices((x, y))

    def parallel():
        return memory.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)

    rows = []
    for source_name, build_source in (
        ("in memory, then map(to_float, num_parallel_calls=AUTOTUNE)", parallel),
        ("TFRecord of PNGs, map(parse + decode_png, num_parallel_calls=AUTOTUNE)", files),
    ):
        dtype = "float32" if build_source is parallel else "uint8"
        attacks = make_attacks(n, dtype)
        pipelines = {"reference": lambda: build_source().batch(BATCH).prefetch(tf.data.AUTOTUNE)}
        for name, attack in attacks.items():
            pipelines[name] = lambda a=attack: apply(a, build_source(), n, False).batch(
                BATCH).prefetch(tf.data.AUTOTUNE)
        median = interleaved(pipelines, repeats)
        for name, seconds in median.items():
            rows.append({
                "source": source_name, "pipeline": name, "examples_per_s": n / seconds,
                "ratio_vs_reference": median["reference"] / seconds,
                "attack_share_of_time": 1 - median["reference"] / seconds,
            })
    return rows


def measure_fit(n, repeats):
    """`model.fit` steps/s with the attack in the pipeline vs without (one epoch each)."""
    import numpy as np
    import tensorflow as tf

    from keras_poison import models

    x, y = source_arrays(n, "float32")
    model = models.vgg_like(input_shape=(32, 32, 3), num_classes=10)
    model.compile("adam", "sparse_categorical_crossentropy")
    attacks = make_attacks(n, "float32")
    source = tf.data.Dataset.from_tensor_slices((x, y))
    configurations = {"clean": lambda: source.batch(64).prefetch(tf.data.AUTOTUNE)}
    for name in ("RandomFlip(0.2)", "ClassPatternNoise(8/255)", "InjectPoisons(10%)"):
        configurations[name] = lambda a=attacks[name]: source.apply(a).batch(64).prefetch(
            tf.data.AUTOTUNE)
    steps = -(-n // 64)
    for build in configurations.values():  # warm-up: tracing
        model.fit(build().take(20), epochs=1, verbose=0, shuffle=False)
    times = {name: [] for name in configurations}
    for _ in range(repeats):
        for name, build in configurations.items():
            start = time.perf_counter()
            model.fit(build(), epochs=1, verbose=0, shuffle=False)
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    return [{"pipeline": name, "steps_per_s": steps / seconds,
             "ratio_vs_clean": median["clean"] / seconds}
            for name, seconds in median.items()]


def stream_peak_rss(kind, n):
    """Runs in a subprocess: stream a synthetic CIFAR stream, print peak RSS."""
    import tensorflow as tf

    def example(i):
        image = tf.random.stateless_uniform((32, 32, 3), seed=tf.stack([i, i]))
        return image, i % 10

    source = tf.data.Dataset.range(n).map(example, num_parallel_calls=tf.data.AUTOTUNE)
    source = source.apply(tf.data.experimental.assert_cardinality(n))
    if kind != "clean":
        source = source.apply(attack_factories(n)[kind]())
    consume(source.batch(BATCH))
    print(json.dumps({"peak_rss_mb": own_peak_rss_mb()}))


def own_peak_rss_mb():
    """This process's peak RSS (VmHWM), in MB.

    `getrusage().ru_maxrss` is not used: Linux carries it over `exec` from
    the parent, so a child would report the parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure_memory(n):
    rows = []
    for kind in ["clean", *attack_factories(n)]:
        output = subprocess.run(
            [sys.executable, __file__, "--memory-child", kind, "--examples", str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append({"stream": kind, **json.loads(output.strip().splitlines()[-1])})
    clean = rows[0]["peak_rss_mb"]
    for row in rows:
        row["over_clean_mb"] = row["peak_rss_mb"] - clean
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", default="float32,uint8")
    parser.add_argument("--fit-examples", type=int, default=10000)
    parser.add_argument("--parts", default="throughput,files,memory,fit")
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        stream_peak_rss(args.memory_child, args.examples)
        return
    import tempfile

    import tensorflow as tf

    parts = args.parts.split(",")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "tensorflow": tf.__version__,
    }

    def save():
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)

    if "throughput" in parts:
        result["throughput"] = measure_throughput(args.examples, args.repeats, args.dtypes.split(","))
        save()
        print_table(["dtype", "place", "pipeline", "examples/s", "ratio vs identity map"], [
            [r["dtype"], r["place"], r["pipeline"], f"{r['examples_per_s']:,.0f}",
             f"{r['ratio_vs_identity_map']:.2f}"] for r in result["throughput"]])
    if "files" in parts:
        with tempfile.TemporaryDirectory() as tmpdir:
            result["files"] = measure_parallel_and_files(args.examples, args.repeats, tmpdir)
        save()
        print_table(["source", "pipeline", "examples/s", "ratio", "attack's share of the time"], [
            [r["source"], r["pipeline"], f"{r['examples_per_s']:,.0f}",
             f"{r['ratio_vs_reference']:.2f}", f"{100 * r['attack_share_of_time']:.1f}%"]
            for r in result["files"]])
    if "memory" in parts:
        result["memory"] = measure_memory(args.examples)
        save()
        print_table(["stream", "peak RSS (MB)", "over clean (MB)"], [
            [r["stream"], f"{r['peak_rss_mb']:.0f}", f"{r['over_clean_mb']:+.0f}"]
            for r in result["memory"]])
    if "fit" in parts:
        result["fit"] = measure_fit(args.fit_examples, max(3, args.repeats // 2))
        save()
        print_table(["pipeline", "steps/s", "ratio vs clean"], [
            [r["pipeline"], f"{r['steps_per_s']:.2f}", f"{r['ratio_vs_clean']:.3f}"]
            for r in result["fit"]])


def print_table(columns, rows):
    """Prints a markdown table, preceded by a blank line."""
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")

if __name__ == "__main__":
    main()
