"""Throughput of a poisoned pipeline through tf.data service: two workers vs one.

The same CIFAR-shaped pipeline (issue 18 §3): images synthesized per example
from its index (standing in for decoding), `ClassPatternNoise` applied to the
data as it is, then `batch(256)` and `repeat()`, handed to
`tf.data.experimental.service.distribute`. A dispatcher runs in this process;
each worker is its own process on localhost (`--serve-worker`), as on a
cluster. The consumer (this process) reads `--warmup` batches, then
`--windows` timed windows of `--batches` batches each; the figure is the
median window's examples/s.

Configurations, measured one after the other in one run:

* in process, no service: the reference;
* service, 1 worker, `ShardingPolicy.OFF` (`parallel_epochs`);
* service, 2 workers, `ShardingPolicy.OFF`: each worker produces the whole
  (repeated) poisoned stream, the consumer reads from both;
* service, 2 workers, `ShardingPolicy.DATA`: static sharding puts the shard
  after the attack, so each worker still runs the whole pipeline and keeps
  every second example (the same poisoned set, no more throughput).

The ratio reported is 2 workers / 1 worker with `OFF`. Worker processes and
the consumer share this machine's cores, so the ratio is bounded by them.

Usage: python benchmarks/data_service.py [--batches 60] [--windows 3]
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

BATCH = 256
EXAMPLES = 50_000  # one epoch of the stream; it repeats


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def pipeline():
    import tensorflow as tf

    from keras_poison import ClassPatternNoise

    def example(i):
        image = tf.random.stateless_uniform(
            (32, 32, 3), seed=tf.stack([i, 0]), minval=0, maxval=256, dtype=tf.int32
        )
        return tf.cast(image, tf.uint8), i % 10

    source = tf.data.Dataset.range(EXAMPLES).map(example, num_parallel_calls=tf.data.AUTOTUNE)
    poisoned = ClassPatternNoise(10, 8, seed=0).transform(source)  # the attack first
    return poisoned.batch(BATCH).repeat()


def serve_worker(dispatcher_address, port):
    import tensorflow as tf

    service = tf.data.experimental.service
    worker = service.WorkerServer(
        service.WorkerConfig(
            dispatcher_address=dispatcher_address,
            worker_address=f"localhost:{port}",
            port=port,
        )
    )
    worker.join()


def examples_per_s(dataset, warmup, batches, windows):
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        seen = 0
        for _ in range(batches):
            seen += int(next(iterator)[1].shape[0])
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates), rates


def through_service(num_workers, policy_name, args):
    import tensorflow as tf

    service = tf.data.experimental.service
    ports = [free_port() for _ in range(num_workers)]
    dispatcher = service.DispatchServer(
        service.DispatcherConfig(port=0, worker_addresses=[f"localhost:{p}" for p in ports])
    )
    address = dispatcher.target.split("://")[1]
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve-worker", address, str(port)],
            env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
        )
        for port in ports
    ]
    try:
        policy = getattr(service.ShardingPolicy, policy_name)
        dataset = pipeline().apply(
            service.distribute(processing_mode=policy, service=dispatcher.target)
        )
        return examples_per_s(dataset, args.warmup, args.batches, args.windows)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        dispatcher._stop()


def load_average():
    """The 1-minute load average (other work on shared cores shows here)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=60, help="batches per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/data_service.json")
    parser.add_argument("--serve-worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_worker:
        serve_worker(args.serve_worker[0], int(args.serve_worker[1]))
        return
    import tensorflow as tf
    from _machine import machine_info

    load_before = load_average()
    rows = []
    configs = [
        ("in process, no service", None, None),
        ("service, 1 worker, OFF", 1, "OFF"),
        ("service, 2 workers, OFF", 2, "OFF"),
        ("service, 2 workers, DATA", 2, "DATA"),
    ]
    for name, num_workers, policy in configs:
        start = time.perf_counter()
        if num_workers is None:
            rate, rates = examples_per_s(pipeline(), args.warmup, args.batches, args.windows)
        else:
            rate, rates = through_service(num_workers, policy, args)
        rows.append(
            {
                "pipeline": name,
                "workers": num_workers,
                "sharding": policy,
                "examples_per_s": rate,
                "window_rates": rates,
                "seconds": time.perf_counter() - start,
            }
        )
        print(f"{name}: {rate:,.0f} examples/s", flush=True)
    by_name = {row["pipeline"]: row["examples_per_s"] for row in rows}
    ratio = by_name["service, 2 workers, OFF"] / by_name["service, 1 worker, OFF"]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "machine_info": machine_info(),
        "tensorflow": tf.__version__,
        "pipeline": "range(50000) -> synthesize uint8 32x32x3 -> ClassPatternNoise(10, 8) "
        "-> batch(256) -> repeat() -> service.distribute",
        "batches_per_window": args.batches,
        "windows": args.windows,
        "rows": rows,
        "ratio_two_workers_vs_one": ratio,
        "load_average_1min": {"before": load_before, "after": load_average()},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print("\n| pipeline | examples/s |")
    print("|---|---:|")
    for row in rows:
        print(f"| {row['pipeline']} | {row['examples_per_s']:,.0f} |")
    print(f"\nratio, 2 workers / 1 worker (OFF): {ratio:.2f}")


if __name__ == "__main__":
    main()
