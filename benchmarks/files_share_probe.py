"""Where the attack's share of a decode-bound pipeline goes (issue 18 §1): a probe.

A TFRecord of 50,000 PNG-encoded CIFAR-shaped images, parsed and decoded in a
parallel map, batched by 256: the bare pipeline, `RandomFlip` unbatched, the
same without `streams.as_one_split`, the unbatched block machinery alone
(`enumerate -> batch(512) -> map -> unbatch`), and `RandomFlip` on batches.
Warm-up, 5 interleaved repeats, median; share = 1 - reference / pipeline.

Usage (from the repository root): python benchmarks/files_share_probe.py
"""

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

import throughput as tp  # noqa: E402
from keras_poison import RandomFlip  # noqa: E402
from keras_poison import streams  # noqa: E402
n=50000; B=256
d=tempfile.mkdtemp(); path=os.path.join(d,"f.tfrecord"); tp.write_tfrecords(path, n)
spec={"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
def decode(r):
    e=tf.io.parse_single_example(r, spec)
    return tf.ensure_shape(tf.io.decode_png(e["image"], channels=3),(32,32,3)), e["label"]
def files(): return tf.data.TFRecordDataset(path).map(decode, num_parallel_calls=tf.data.AUTOTUNE).apply(tf.data.experimental.assert_cardinality(n))
atk=RandomFlip(0.2,10,seed=0)
orig=streams.as_one_split
def bypass(p, unbatch=False, cardinality=None): return p.unbatch() if unbatch else p
def no_split():
    streams.as_one_split=bypass
    try: return files().apply(atk).batch(B).prefetch(-1)
    finally: streams.as_one_split=orig
P={"ref": lambda: files().batch(B).prefetch(-1),
   "RandomFlip": lambda: files().apply(atk).batch(B).prefetch(-1),
   "RandomFlip without as_one_split": no_split,
   "enumerate-batch512-unbatch only": lambda: files().enumerate().batch(512).map(lambda i,e: e).unbatch().batch(B).prefetch(-1),
   "batch(256) then RandomFlip on batches": lambda: atk.transform(files().batch(B)).prefetch(-1),
}
def consume(ds):
    t=time.perf_counter()
    for _ in ds: pass
    return time.perf_counter()-t
for b in P.values(): consume(b())
T={k:[] for k in P}
for r in range(5):
    for k,b in P.items(): T[k].append(consume(b()))
ref=statistics.median(T["ref"])
for k,v in T.items(): print(f"{k:40s} {n/statistics.median(v):10,.0f} ex/s  share {1-ref/statistics.median(v):+.1%}")
