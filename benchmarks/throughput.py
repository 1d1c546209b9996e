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


def make_attacks():
    from keras_poison import ClassPatternNoise
    from keras_poison import RandomFlip
    from keras_poison import TargetedFlip

    cm_pairs = {0: 8, 8: 0, 1: 9, 9: 1, 2: 4, 4: 2, 3: 5, 5: 3, 6: 7, 7: 6}
    return {
        "RandomFlip(0.2)": RandomFlip(0.2, 10, seed=0),
        "TargetedFlip(0.2, 5 pairs)": TargetedFlip(cm_pairs, rate=0.2, num_classes=10),
        "ClassPatternNoise(8/255)": ClassPatternNoise(10, epsilon=8 / 255, seed=0),
    }


def consume(dataset):
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def measure_throughput(n, repeats):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((n, 32, 32, 3), dtype=np.float32)
    y = (np.arange(n) % 10).astype(np.int64)
    source = tf.data.Dataset.from_tensor_slices((x, y))
    pipelines = {
        ("unbatched", "reference: identity map"): lambda: source.map(lambda a, b: (a, b)).batch(BATCH),
        ("unbatched", "reference: tf.identity map (kept)"): lambda: source.map(
            lambda a, b: (tf.identity(a), tf.identity(b))
        ).batch(BATCH),
        ("batched", "reference: identity map"): lambda: source.batch(BATCH).map(lambda a, b: (a, b)),
    }
    for name, attack in make_attacks().items():
        pipelines[("unbatched", name)] = lambda a=attack: source.apply(a).batch(BATCH)
        pipelines[("batched", name)] = lambda a=attack: a.transform(source.batch(BATCH), num_examples=n)
    for build in pipelines.values():  # warm-up: tracing, plan tables
        consume(build())
    times = {key: [] for key in pipelines}
    for _ in range(repeats):  # interleaved, so drift hits every pipeline alike
        for key, build in pipelines.items():
            times[key].append(consume(build()))
    median = {key: float(np.median(t)) for key, t in times.items()}
    rows = []
    for (place, name), seconds in median.items():
        reference = median[(place, "reference: identity map")]
        rows.append(
            {
                "place": place,
                "pipeline": name,
                "examples_per_s": n / seconds,
                "ratio_vs_identity_map": reference / seconds,
            }
        )
    return rows


def stream_peak_rss(kind, n):
    """Runs in a subprocess: stream a synthetic CIFAR stream, print peak RSS."""
    import tensorflow as tf

    def example(i):
        image = tf.random.stateless_uniform((32, 32, 3), seed=tf.stack([i, i]))
        return image, i % 10

    source = tf.data.Dataset.range(n).map(example, num_parallel_calls=tf.data.AUTOTUNE)
    source = source.apply(tf.data.experimental.assert_cardinality(n))
    if kind != "clean":
        source = source.apply(make_attacks()[kind])
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
    for kind in ["clean", *make_attacks()]:
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
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        stream_peak_rss(args.memory_child, args.examples)
        return
    import tensorflow as tf

    throughput = measure_throughput(args.examples, args.repeats)
    memory = measure_memory(args.examples)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "tensorflow": tf.__version__,
        "throughput": throughput,
        "memory": memory,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print("| place | pipeline | examples/s | ratio vs identity map |")
    print("|---|---|---|---|")
    for row in throughput:
        print(
            f"| {row['place']} | {row['pipeline']} | {row['examples_per_s']:,.0f} | "
            f"{row['ratio_vs_identity_map']:.2f} |"
        )
    print("\n| stream | peak RSS (MB) | over clean (MB) |")
    print("|---|---|---|")
    for row in memory:
        print(f"| {row['stream']} | {row['peak_rss_mb']:.0f} | {row['over_clean_mb']:+.0f} |")


if __name__ == "__main__":
    main()
