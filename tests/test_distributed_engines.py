"""The poisoned set does not depend on sharding or workers, on real engines.

DESIGN: "Which examples are poisoned, and how, is a pure function of
`(seed, example)` — not of ... how the dataset is sharded across workers
(tf.data service, multi-worker strategies)." Both engines are started for
real on localhost inside these tests:

* **tf.data service**: an in-process `DispatchServer` and two `WorkerServer`s.
  The attack is applied to the data as it is, then the pipeline is handed to
  `tf.data.experimental.service.distribute`. What each sharding mode means:

  - `ShardingPolicy.OFF` (`processing_mode="parallel_epochs"`): every worker
    runs the whole pipeline, so a consumer reads the poisoned set once per
    worker: two exact copies of `attack.poison(x, y)`.
  - static sharding (`ShardingPolicy.DATA`, `FILE_OR_DATA`): tf.data puts a
    `shard(num_workers, worker_index)` at the *end* of each worker's copy of
    the pipeline (or on its files), after the attack, so every example is
    produced once: a consumer reads `attack.poison(x, y)` exactly.
  - dynamic sharding (`ShardingPolicy.DYNAMIC`,
    `processing_mode="distributed_epoch"`): the dispatcher hands out pieces
    of the pipeline's *sources* to whichever worker asks. A position-keyed
    transform keeps its pipeline in one piece (`streams.as_one_split`), so
    one worker produces the whole poisoned epoch and the consumer reads
    `attack.poison(x, y)` exactly (tests at the end of this file); placed
    after `distribute`, it is refused.

* **MultiWorkerMirroredStrategy**: two worker processes (`TF_CONFIG`, CPU
  only, free localhost ports) run `tests/distributed_worker.py`: the attacks
  under `distribute_datasets_from_function` with `InputContext` sharding and
  under `experimental_distribute_dataset`, and `SupplanterPoison` crafting
  under the strategy. Their results are compared with this process (one
  device, no strategy).

Every comparison is exact: the multiset of `(image bytes, label, mask)`
with the mask carried by each example (`with_mask=True`).
"""

import collections
import json
import os
import socket
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_poison as kp
from tests import distributed_worker as worker

service = tf.data.experimental.service
ShardingPolicy = service.ShardingPolicy

N = 203  # not a multiple of the batch size nor of the number of workers
BATCH = 16
NUM_CLASSES = 10
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def make_data(n=N):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 4, 4, 3)).astype("uint8")
    y = rng.integers(0, NUM_CLASSES, (n,)).astype("int64")
    return x, y


# Position-keyed attacks: a label-only one, a class-pair one, an image one.
ATTACKS = {
    "random_flip": lambda: kp.RandomFlip(0.2, NUM_CLASSES, seed=1),
    "targeted_flip": lambda: kp.TargetedFlip({0: 1, 1: 0, 2: 3}, 0.3, seed=2),
    "class_pattern": lambda: kp.ClassPatternNoise(NUM_CLASSES, 8, seed=3, fraction=0.5),
}


def multiset(x, y, mask):
    return collections.Counter(
        (image.tobytes(), int(label), bool(flag)) for image, label, flag in zip(x, y, mask)
    )


def expected(attack, x, y, copies=1):
    x_p, y_p, mask = attack.poison(x, y)
    assert 0 < mask.sum() < len(x)
    return collections.Counter({k: copies * v for k, v in multiset(x_p, y_p, mask).items()})


def read(ds):
    """The multiset of a stream of `(x, y, mask)` batches."""
    batches = list(ds.as_numpy_iterator())
    return multiset(*(np.concatenate([b[i] for b in batches]) for i in range(3)))


def poisoned_stream(attack, x, y, layout):
    """The attack on the data as it is: on examples (then batched), or on batches."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if layout == "examples":
        return attack.transform(ds, with_mask=True).batch(BATCH)
    return attack.transform(ds.batch(BATCH), with_mask=True)


# ----------------------------------------------------------------------
# tf.data service: a dispatcher and two workers in this process.


@pytest.fixture(scope="module")
def cluster():
    ports = [_free_port(), _free_port()]
    addresses = [f"localhost:{p}" for p in ports]
    # Static sharding needs the dispatcher to know its workers up front.
    dispatcher = service.DispatchServer(
        service.DispatcherConfig(port=0, worker_addresses=addresses)
    )
    dispatcher_address = dispatcher.target.split("://")[1]
    workers = [
        service.WorkerServer(
            service.WorkerConfig(
                dispatcher_address=dispatcher_address,
                worker_address=address,
                port=port,
                # Stopping a worker waits for its heartbeat thread (30 s by default).
                heartbeat_interval_ms=100,
            )
        )
        for address, port in zip(addresses, ports)
    ]
    yield dispatcher.target
    for server in workers + [dispatcher]:
        server._stop()


def distribute(policy, target, job_name=None):
    return service.distribute(processing_mode=policy, service=target, job_name=job_name)


@pytest.mark.parametrize("layout", ["examples", "batches"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_service_without_sharding_each_worker_yields_the_whole_poisoned_set(
    cluster, name, layout
):
    # parallel_epochs: both workers run the whole pipeline, so the consumer
    # reads two exact copies of poison(x, y).
    x, y = make_data()
    attack = ATTACKS[name]()
    ds = poisoned_stream(attack, x, y, layout).apply(distribute(ShardingPolicy.OFF, cluster))
    assert read(ds) == expected(attack, x, y, copies=2)


@pytest.mark.parametrize("policy", ["DATA", "FILE_OR_DATA"])
@pytest.mark.parametrize("layout", ["examples", "batches"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_service_static_sharding_yields_the_poisoned_set_once(cluster, name, layout, policy):
    x, y = make_data()
    attack = ATTACKS[name]()
    ds = poisoned_stream(attack, x, y, layout)
    ds = ds.apply(distribute(getattr(ShardingPolicy, policy), cluster))
    assert read(ds) == expected(attack, x, y)


def test_service_static_sharding_of_tfrecord_files_yields_the_poisoned_set(cluster, tmp_path):
    # Files are what FILE_OR_DATA shards when it can: here the attack's own
    # example index (a `range` zipped with the records) makes tf.data fall
    # back to sharding the poisoned examples, which keeps the set exact.
    x, y = make_data()
    files = []
    for part in range(4):
        path = str(tmp_path / f"part{part}.tfrecord")
        files.append(path)
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(part, N, 4):
                feature = {
                    "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x[i].tobytes()])),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[y[i]])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())
    order = np.concatenate([np.arange(part, N, 4) for part in range(4)])

    def parse(record):
        f = tf.io.parse_single_example(
            record,
            {"x": tf.io.FixedLenFeature([], tf.string), "y": tf.io.FixedLenFeature([], tf.int64)},
        )
        return tf.reshape(tf.io.decode_raw(f["x"], tf.uint8), (4, 4, 3)), f["y"]

    attack = ATTACKS["random_flip"]()
    records = tf.data.TFRecordDataset(files).map(parse)
    ds = attack.transform(records, num_examples=N, with_mask=True).batch(BATCH)
    ds = ds.apply(distribute(ShardingPolicy.FILE_OR_DATA, cluster))
    # The stream's examples are the files' order; poison() on that order.
    assert read(ds) == expected(attack, x[order], y[order])


def test_service_two_consumers_of_a_statically_sharded_job_each_read_the_poisoned_set(cluster):
    # Consumers sharing a job (model.fit on two hosts reading one job): with
    # static sharding each consumer's epoch is the whole poisoned set.
    x, y = make_data()
    attack = ATTACKS["random_flip"]()
    ds = poisoned_stream(attack, x, y, "examples")
    ds = ds.apply(distribute(ShardingPolicy.DATA, cluster, job_name="two_consumers"))
    results, errors = [None, None], []

    def consume(i):
        try:
            results[i] = read(ds)
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    want = expected(attack, x, y)
    assert results[0] == want and results[1] == want


def test_service_distributed_epoch_of_already_poisoned_arrays_yields_the_poisoned_set(cluster):
    # The documented way to balance work dynamically: poison first, then
    # hand the poisoned arrays (mask with them) to distributed_epoch.
    x, y = make_data()
    attack = ATTACKS["class_pattern"]()
    ds = tf.data.Dataset.from_tensor_slices(attack.poison(x, y)).batch(BATCH)
    ds = ds.apply(distribute("distributed_epoch", cluster))
    assert read(ds) == expected(attack, x, y)


def test_service_file_sharding_of_in_memory_data_is_tensorflows_clear_error(cluster):
    # FILE sharding needs files: tf.data refuses and names the policy to use.
    x, y = make_data()
    ds = poisoned_stream(ATTACKS["random_flip"](), x, y, "examples")
    ds = ds.apply(distribute(ShardingPolicy.FILE, cluster))
    with pytest.raises(tf.errors.NotFoundError, match="(?s)shard"):
        read(ds)


def test_attack_after_the_shard_of_an_input_context_is_refused():
    # Under distribute_datasets_from_function the shard is the user's own:
    # an attack placed after it would key on shard positions, and raises.
    x, y = make_data()
    context = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2
    )
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shard(
        context.num_input_pipelines, context.input_pipeline_id
    )
    with pytest.raises(ValueError, match="`shard`.*Apply the attack first"):
        ATTACKS["random_flip"]().transform(ds)


# ----------------------------------------------------------------------
# MultiWorkerMirroredStrategy: two worker processes on localhost.

MW_N = 41  # the two workers' shards differ in size (21 and 20)
MW_CLASSES = 5
MW_BATCH = 8
MW_TIMEOUT_S = 150
# What a failure to start gRPC collectives looks like (then the test skips).
_CANNOT_START = (
    "Address already in use",
    "Failed to connect",
    "failed to connect to all addresses",
)


def _start_workers(workdir):
    ports = [_free_port(), _free_port()]
    cluster_spec = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(
            os.environ,
            CUDA_VISIBLE_DEVICES="",
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
            TF_CONFIG=json.dumps(
                {"cluster": cluster_spec, "task": {"type": "worker", "index": index}}
            ),
        )
        log = open(os.path.join(workdir, f"log{index}.txt"), "w")
        procs.append(
            subprocess.Popen(
                [sys.executable, os.path.join(REPO, "tests", "distributed_worker.py"),
                 workdir, str(index)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            )
        )
        log.close()
    return procs


def _wait(procs, workdir):
    """`None` when both workers finished, else the tail of the failing log."""
    try:
        codes = [p.wait(timeout=MW_TIMEOUT_S) for p in procs]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if codes == [0, 0]:
        return None
    logs = []
    for index in range(2):
        with open(os.path.join(workdir, f"log{index}.txt")) as f:
            logs.append(f.read())
    reason = "timed out" if codes is None else f"exit codes {codes}"
    return reason, "\n".join(f"--- worker {i} ---\n{log[-3000:]}" for i, log in enumerate(logs))


@pytest.fixture(scope="module")
def multiworker(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("multiworker"))
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(MW_N, 4, 4, 1)).astype("float32")
    y = rng.integers(0, MW_CLASSES, (MW_N,)).astype("int64")
    keras.utils.set_random_seed(0)
    model = worker.tiny_classifier(x.shape[1:], MW_CLASSES)
    weights = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(
        os.path.join(workdir, "inputs.npz"),
        x=x, y=y, global_batch=MW_BATCH, num_classes=MW_CLASSES, **weights,
    )
    # The same examples in 4 files, in order (part0 holds the first ones).
    for part, rows in enumerate(np.array_split(np.arange(MW_N), 4)):
        worker.write_records(os.path.join(workdir, f"part{part}.tfrecord"), x[rows], y[rows])
    failure = None
    for _ in range(2):  # a second try on fresh ports if a port was taken meanwhile
        failure = _wait(_start_workers(workdir), workdir)
        if failure is None:
            break
    if failure is not None:
        reason, logs = failure
        if any(sign in logs for sign in _CANNOT_START):
            pytest.skip(f"multi-worker collectives cannot start on localhost ({reason}):\n{logs}")
        pytest.fail(f"MultiWorkerMirroredStrategy workers failed ({reason}):\n{logs}")
    results = [dict(np.load(os.path.join(workdir, f"worker{i}.npz"))) for i in range(2)]
    return x, y, model, results


def test_multiworker_cluster_has_two_replicas_in_sync(multiworker):
    *_, results = multiworker
    assert [int(r["num_replicas"]) for r in results] == [2, 2]


@pytest.mark.parametrize("name", ["random_flip", "targeted_flip", "class_pattern"])
def test_multiworker_input_context_shards_give_the_one_process_poisoned_set(multiworker, name):
    x, y, _, results = multiworker
    attack = worker.stream_attacks(MW_CLASSES)[name]
    x_p, y_p, mask = attack.poison(x, y)
    union = sum(
        (multiset(r[f"{name}_x"], r[f"{name}_y"], r[f"{name}_mask"]) for r in results),
        collections.Counter(),
    )
    assert union == multiset(x_p, y_p, mask)
    # Each worker read its own shard (21 and 20 examples), no overlap.
    assert sorted(len(r[f"{name}_y"]) for r in results) == [20, 21]
    # The poisoned count summed across workers by the strategy itself.
    assert [int(r[f"{name}_reduced_count"]) for r in results] == [mask.sum()] * 2


def test_multiworker_autosharded_dataset_gives_the_one_process_poisoned_set(multiworker):
    # experimental_distribute_dataset shards the poisoned batches (AUTO
    # policy; in-memory data falls back to DATA, after the attack).
    x, y, _, results = multiworker
    x_p, y_p, mask = worker.stream_attacks(MW_CLASSES)["random_flip"].poison(x, y)
    union = sum(
        (multiset(r["auto_x"], r["auto_y"], r["auto_mask"]) for r in results),
        collections.Counter(),
    )
    assert union == multiset(x_p, y_p, mask)


def test_multiworker_autosharded_poisoned_batches_give_the_one_process_poisoned_set(multiworker):
    # The attack on batches, then experimental_distribute_dataset.
    x, y, _, results = multiworker
    x_p, y_p, mask = worker.stream_attacks(MW_CLASSES)["random_flip"].poison(x, y)
    union = sum(
        (multiset(r["batched_x"], r["batched_y"], r["batched_mask"]) for r in results),
        collections.Counter(),
    )
    assert union == multiset(x_p, y_p, mask)


def test_multiworker_autosharded_tfrecord_files_give_the_one_process_poisoned_set(multiworker):
    x, y, _, results = multiworker
    x_p, y_p, mask = worker.stream_attacks(MW_CLASSES)["random_flip"].poison(x, y)
    union = sum(
        (multiset(r["files_x"], r["files_y"], r["files_mask"]) for r in results),
        collections.Counter(),
    )
    assert union == multiset(x_p, y_p, mask)
    # Each worker read its share of the batches, not all of them.
    assert sum(len(r["files_y"]) for r in results) == MW_N


def test_multiworker_crafting_gives_the_one_device_poisons(multiworker):
    x, y, model, results = multiworker
    assert tf.distribute.get_strategy().num_replicas_in_sync == 1
    attack = worker.supplanter(model)
    seeds = attack.select_seeds(y)
    crafted = attack.craft(x[seeds], y[seeds], indices=seeds)
    # Seeds that stop early and seeds that run every step: the mask is exercised.
    assert len(set(crafted.steps_taken.tolist())) > 1
    for r in results:
        np.testing.assert_array_equal(r["craft_images"], crafted.images)
        np.testing.assert_array_equal(r["craft_steps"], crafted.steps_taken)


def test_multiworker_supplanter_poison_gives_the_one_device_poisoned_set(multiworker):
    x, y, model, results = multiworker
    x_p, y_p, mask = worker.supplanter(model).poison(x, y)
    for r in results:
        np.testing.assert_array_equal(r["supplanter_x"], x_p)
        np.testing.assert_array_equal(r["supplanter_y"], y_p)
        np.testing.assert_array_equal(r["supplanter_mask"], mask)


# ----------------------------------------------------------------------
# tf.data service, dynamic sharding (issue 18 §3, three silent wrong results
# now fixed): `processing_mode="distributed_epoch"` divides every *source* of
# the pipeline between the workers, so a position-keyed transform (the
# attacks, `Sanitize(key="index")`) placed before `distribute` keeps its
# pipeline in one split (`streams.as_one_split`) and gives the exact set; one
# placed after `distribute` is refused at build time. Each outcome must be
# the exact set, or a clear error (naming the transform) raised before any
# element is delivered.


# Larger data, read twice: with a couple of hundred examples one worker
# sometimes takes every split and a wrong result happens to be right.
N_LARGE = 2000
RUNS = 2


def _outcome(build, want, transform):
    """'exact', 'clear error', or what went wrong, over `RUNS` reads."""
    for _ in range(RUNS):
        outcome = _one_outcome(build, want, transform)
        if outcome not in ("exact", "clear error"):
            return outcome
    return outcome


def _one_outcome(build, want, transform, parts=3):
    """'exact', 'wrong', 'clear error', or 'late error' (after elements were read)."""
    name = type(transform).__name__
    try:
        ds = build()
    except Exception as error:
        return "clear error" if name in str(error) else f"unclear error: {error}"
    batches = []
    try:
        for batch in ds.as_numpy_iterator():
            batches.append(batch)
    except Exception as error:
        if not batches and name in str(error):
            return "clear error"
        return f"late error after {len(batches)} batches: {str(error)[-200:]}"
    got = multiset(*(np.concatenate([b[i] for b in batches]) for i in range(parts)))
    return "exact" if got == want else "wrong"


def pairs(x, y):
    """The multiset of `(image bytes, label, True)`: a stream without a mask."""
    return multiset(x, y, np.ones(len(y), bool))


def with_flag(ds):
    return ds.map(lambda x, y: (x, y, tf.ones_like(y, tf.bool)))


@pytest.mark.parametrize("mode", ["distributed_epoch", "parallel_epochs"])
@pytest.mark.parametrize("num_examples", [N_LARGE, "count"])
def test_attack_after_service_distribute_is_refused(cluster, num_examples, mode):
    # The workers' elements arrive in an order of their own (and, with
    # parallel_epochs, once per worker): positions name no example. TF 2.21's
    # class is `_DataServiceDatasetV2` (it was refused under no name before).
    x, y = make_data(N_LARGE)
    attack = ATTACKS["random_flip"]()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(distribute(mode, cluster))
    with pytest.raises(
        ValueError, match="RandomFlip.*`tf.data.experimental.service.distribute`.*Apply the attack first"
    ):
        attack.transform(ds, num_examples=num_examples, with_mask=True)


def test_attack_after_service_from_dataset_id_is_refused(cluster):
    x, y = make_data()
    source = tf.data.Dataset.from_tensor_slices((x, y))
    dataset_id = service.register_dataset(cluster, source)
    ds = service.from_dataset_id(
        "distributed_epoch", cluster, dataset_id, element_spec=source.element_spec
    )
    with pytest.raises(ValueError, match="TargetedFlip.*tf.data.experimental.service"):
        ATTACKS["targeted_flip"]().transform(ds, num_examples=N)


def test_attack_on_a_service_dataset_made_inside_flat_map_is_refused(cluster):
    # The function's graph is searched for the service's op (`DataServiceDatasetV4`).
    x, y = make_data()
    source = tf.data.Dataset.from_tensor_slices((x, y))
    dataset_id = service.register_dataset(cluster, source)
    ds = tf.data.Dataset.range(1).flat_map(
        lambda _: service.from_dataset_id(
            "parallel_epochs", cluster, dataset_id, element_spec=source.element_spec
        )
    )
    with pytest.raises(ValueError, match="flat_map whose function uses `tf.data.experimental.service`"):
        ATTACKS["random_flip"]().transform(ds, num_examples=N)


@pytest.mark.parametrize("layout", ["examples", "batches"])
@pytest.mark.parametrize("name", ["random_flip", "class_pattern"])
def test_attack_before_distributed_epoch_yields_the_poisoned_set_exactly(cluster, name, layout):
    # Before the fix: on batches, each worker's running offset started at 0
    # (287 of 2,000 examples wrongly poisoned, silently); on examples,
    # `enumerate`'s indices were paired with other workers' rows, then
    # "expected to contain 2000 elements but contained only 981".
    x, y = make_data(N_LARGE)
    attack = ATTACKS[name]()

    def build():
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if layout == "examples":
            ds = attack.transform(ds, with_mask=True).batch(BATCH)
        else:
            ds = attack.transform(ds.batch(BATCH), num_examples=N_LARGE, with_mask=True)
        return ds.apply(distribute("distributed_epoch", cluster))

    assert _outcome(build, expected(attack, x, y), attack) == "exact"


def test_attack_with_repeat_before_distributed_epoch_yields_whole_poisoned_epochs(cluster):
    # `repeat` after the attack: each epoch is one split, so whichever worker
    # takes it produces that whole epoch, exactly.
    x, y = make_data(N_LARGE)
    attack = ATTACKS["random_flip"]()

    def build():
        ds = attack.transform(tf.data.Dataset.from_tensor_slices((x, y)), with_mask=True)
        return ds.shuffle(500, seed=0).batch(BATCH).repeat(3).apply(
            distribute("distributed_epoch", cluster)
        )

    assert _outcome(build, expected(attack, x, y, copies=3), attack) == "exact"


def test_stream_through_one_split_keeps_cardinality_and_layout():
    # What `as_one_split` must not change for a pipeline without the service.
    x, y = make_data()
    attack = ATTACKS["class_pattern"]()
    source = tf.data.Dataset.from_tensor_slices((x, y))
    examples = attack.transform(source, with_mask=True)
    batches = attack.transform(source.batch(BATCH), with_mask=True)
    assert int(examples.cardinality()) == N
    assert int(batches.cardinality()) == -(-N // BATCH)
    assert examples.element_spec == (
        tf.TensorSpec((4, 4, 3), tf.uint8), tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.bool)
    )
    assert kp.streams.pipeline_batching(examples) is False
    assert kp.streams.batching_source(batches) == kp.streams.BatchingSource(N, BATCH, False)
    assert kp.streams.order_changes(examples.shuffle(10)) == ["shuffle"]
    # The walk goes inside: Sanitize(action="drop") filters, as before.
    assert kp.streams.order_changes(kp.Sanitize(_report(N))(source)) == ["filter"]
    # Ops that check their inputs' shapes (`concatenate` refused the op behind
    # `choose_from_datasets` before its shapes were restated) and `zip`.
    want = expected(attack, x, y, copies=2)
    assert read(examples.concatenate(examples).batch(BATCH)) == want
    assert read(batches.concatenate(batches)) == want
    assert read(tf.data.Dataset.zip(source, examples).map(lambda a, b: b).batch(BATCH)) == expected(
        attack, x, y
    )


def _report(n, seed=5):
    rng = np.random.default_rng(seed)
    flagged = rng.random(n) < 0.1
    return kp.DetectionReport(
        scores=flagged.astype(float),
        flagged=flagged,
        suggested_labels=rng.integers(0, NUM_CLASSES, n),
    )


@pytest.mark.parametrize("layout", ["examples", "batches"])
@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_index_sanitize_before_distributed_epoch_yields_the_sanitized_set(cluster, action, layout):
    x, y = make_data(N_LARGE)
    sanitize = kp.Sanitize(_report(N_LARGE), action=action)

    def build():
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = sanitize(ds).batch(BATCH) if layout == "examples" else sanitize(ds.batch(BATCH))
        return with_flag(ds).apply(distribute("distributed_epoch", cluster))

    assert _outcome(build, pairs(*sanitize.apply(x, y)), sanitize) == "exact"


def test_index_sanitize_after_service_distribute_is_refused(cluster):
    x, y = make_data(N_LARGE)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(distribute("distributed_epoch", cluster))
    with pytest.raises(ValueError, match="Sanitize keys.*tf.data.experimental.service.distribute.*key='content'"):
        kp.Sanitize(_report(N_LARGE)).transform(ds)


@pytest.mark.parametrize("place", ["before", "after"])
def test_content_sanitize_and_pattern_removal_work_on_either_side_of_distributed_epoch(
    cluster, place
):
    # Keyed on content, or the same for every example: no position to keep.
    x, y = make_data(N_LARGE)
    sanitize = kp.Sanitize(_report(N_LARGE).with_content_keys(x, y), action="relabel", key="content")
    removal = kp.ClassPatternRemoval(NUM_CLASSES).fit(x, y)

    def build(transform):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if place == "before":
            ds = ds.apply(transform).batch(BATCH).apply(distribute("distributed_epoch", cluster))
        else:
            ds = ds.batch(BATCH).apply(distribute("distributed_epoch", cluster)).apply(transform)
        return with_flag(ds)

    assert _outcome(lambda: build(sanitize), pairs(*sanitize.apply(x, y)), sanitize) == "exact"
    assert _outcome(lambda: build(removal), pairs(*removal.remove(x, y)), removal) == "exact"


def test_regression_poisons_alone_before_distributed_epoch_are_exact(cluster):
    x, y = make_data(N_LARGE)
    rng = np.random.default_rng(2)
    seeds = np.sort(rng.choice(N_LARGE, 30, replace=False))
    poisons = kp.PoisonSet(
        np.full((30, 4, 4, 3), 7, np.uint8), (y[seeds] + 1) % NUM_CLASSES, seeds,
        source_labels=y[seeds],
    )
    attack = kp.InjectPoisons(poisons, keep_clean=False)

    def build():
        ds = attack.transform(tf.data.Dataset.from_tensor_slices((x, y)), with_mask=True)
        return ds.batch(BATCH).apply(distribute("distributed_epoch", cluster))

    assert _outcome(build, expected(attack, x, y), attack) == "exact"
