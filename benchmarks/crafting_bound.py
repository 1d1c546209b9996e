"""What bounds crafting speed against `train_on_batch` (issue 18 §4).

A crafting iteration is a forward pass and a backward pass *to the input*;
a training step is a forward pass, a backward pass *to the weights* and the
optimizer's update. The two backward passes share every layer's gradient
with respect to its input except the first layer's, which only crafting
needs, and differ by the weight gradients, which only training needs. This
script times, per seed model, at one batch size, in one process
(warm-up, interleaved repeats, median), each as a `tf.function`:

* `train_on_batch` (Keras' compiled train step, Adam);
* forward + gradient to the weights (the training step without the update);
* forward + gradient to the input (one crafting iteration, as
  `SignedGradientCrafter` computes it on `logit_function(model)`);
* forward only;
* the first convolution's two gradient kernels on their own:
  `Conv2DBackpropInput` (crafting) and `Conv2DBackpropFilter` (training),
  at the layer's real shapes.

Usage: python benchmarks/crafting_bound.py [--batch 128] [--repeats 7]
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

MODELS = {"lenet5": (28, 28, 1), "vgg_like": (32, 32, 3), "vgg9": (32, 32, 3)}


def timed(function, calls):
    start = time.perf_counter()
    for _ in range(calls):
        out = function()
    first = out[0] if isinstance(out, (list, tuple)) else out
    if hasattr(first, "numpy"):
        first.numpy()  # wait for the last call's result
    return (time.perf_counter() - start) / calls


def bench(name, batch, repeats, calls):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_poison import logit_function
    from keras_poison import models

    shape = MODELS[name]
    model = getattr(models, name)(input_shape=shape, num_classes=10, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = (np.arange(batch) % 10).astype("int32")
    xt, yt = tf.constant(x), tf.constant(y)
    logits = logit_function(model)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def forward():
        return logits(xt)

    @tf.function
    def input_gradient():
        with tf.GradientTape() as tape:
            tape.watch(xt)
            out = logits(xt)
            loss = tf.reduce_sum(tf.gather(out, yt, axis=1, batch_dims=1))
        return tape.gradient(loss, xt)

    @tf.function
    def weight_gradient():
        with tf.GradientTape() as tape:
            loss = loss_fn(yt, model(xt, training=True))
        return tape.gradient(loss, model.trainable_variables)

    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    kernel = first.kernel
    out_shape = first.compute_output_shape((batch, *shape))
    upstream = tf.constant(rng.random(out_shape, dtype=np.float32))
    strides = [1, *first.strides, 1]
    padding = first.padding.upper()

    @tf.function
    def first_backprop_input():
        return tf.raw_ops.Conv2DBackpropInput(
            input_sizes=[batch, *shape], filter=kernel, out_backprop=upstream,
            strides=strides, padding=padding)

    @tf.function
    def first_backprop_filter():
        return tf.raw_ops.Conv2DBackpropFilter(
            input=xt, filter_sizes=list(kernel.shape), out_backprop=upstream,
            strides=strides, padding=padding)

    runs = {
        "train_on_batch": lambda: model.train_on_batch(x, y),
        "forward + gradient to the weights": weight_gradient,
        "forward + gradient to the input (a crafting iteration)": input_gradient,
        "forward only": forward,
        f"first conv ({first.name}) Conv2DBackpropInput": first_backprop_input,
        f"first conv ({first.name}) Conv2DBackpropFilter": first_backprop_filter,
    }
    for run in runs.values():
        timed(run, 2)
    seconds = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            seconds[key].append(timed(run, calls))
    median_ms = {key: 1000 * statistics.median(v) for key, v in seconds.items()}
    ratio = median_ms["train_on_batch"] / median_ms[
        "forward + gradient to the input (a crafting iteration)"]
    return {"model": name, "input_shape": shape, "batch": batch, "median_ms": median_ms,
            "crafting_iterations_per_train_step": ratio}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet5,vgg_like")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "crafting_bound.json"))
    args = parser.parse_args()
    results = [bench(name, args.batch, args.repeats, args.calls) for name in args.models.split(",")]
    report = {"command": "python benchmarks/crafting_bound.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "results": results}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    for result in results:
        print(f"\n{result['model']} (batch {result['batch']}): "
              f"{result['crafting_iterations_per_train_step']:.2f} crafting iterations per train step")
        for key, value in result["median_ms"].items():
            print(f"  {key:<60} {value:8.2f} ms")


if __name__ == "__main__":
    main()
