"""Crafting speed on ResNet-50 at 224x224 (the class-oriented paper's ImageNet setting).

Issue 17 §3. One run, one process, side by side (BENCHMARKS.md: warm-up first,
interleaved repeats, medians of per-repeat ratios):

* the data: real CIFAR-10 images (`/work/shared/data/cifar10_subset.npz`)
  written out as an image folder of PNGs upsampled to 224x224
  (`keras_poison.datasets.write_image_folder`) and read back as a stream
  (`keras_poison.datasets.image_folder_dataset`), as ImageNet would be read;
* the model: `keras_poison.models.resnet50(input_shape=(224, 224, 3),
  num_classes=10)`, untrained (training ResNet-50 at 224x224 on two CPU
  cores is out of reach; an untrained model does the same arithmetic per
  step, but Algorithm 1's early break behaves differently, see below);
* the reference: `model.train_on_batch` images/s on a twin of the model
  (same builder, same weights, same batch);
* crafting: `SignedGradientCrafter(early_break=False)`, every seed doing the
  initial step and all T further steps: the engine's cost per iteration,
  which does not depend on training. Image-iterations = steps applied
  (initial included, T + 1 per image) per second, as in
  `benchmarks/crafting_speed.py`. `SupplanterPoison.craft` (COEG, Algorithm 1
  with its break) is timed too, on the same seeds; its steps per image are
  those of an untrained model, so its figure is illustrative only;
* memory: the process's peak RSS (VmHWM) after crafting one batch, and
  again after crafting several batches with the same crafter: memory is
  bounded by the batch if the peak does not grow with the number of seeds.

Then the arithmetic for ImageNet at alpha = 10% (128,117 poisons of
1,281,167 training images) on one GPU, from the measured ratio and an
**assumed** GPU training throughput (no GPU here), printed and recorded as
such.

Usage (from the repository root; CPU only, ~6-8 min on 2 shared cores):

    python benchmarks/crafting_resnet50.py
    python benchmarks/crafting_resnet50.py --quick    # smoke run, T=1, writes nothing

The full run writes `benchmarks/results/crafting_resnet50.json` and `.md`.
"""

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CIFAR_PATH = "/work/shared/data/cifar10_subset.npz"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
IMAGE_SIZE = (224, 224)
SUPPLANTER = 0
EPSILON = 0.03  # in [0, 1] image units; the arithmetic does not depend on it
LAM = 1.0
IMAGENET_TRAIN = 1_281_167
ALPHA = 0.10
# ASSUMPTION (not measured here: no GPU was lent): ResNet-50 training
# throughput at 224x224 on one data-centre GPU. Override with --gpu-train-ips.
GPU_TRAIN_IPS_ASSUMED = 400.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: T=1, 1 repeat, no output")
    parser.add_argument("--batch", type=int, default=8, help="crafting and train_on_batch batch size")
    parser.add_argument("--steps", type=int, default=10, help="T, signed steps after the initial one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-calls", type=int, default=3,
                        help="train_on_batch calls per timed reference unit")
    parser.add_argument("--memory-batches", type=int, default=2,
                        help="batches crafted in one call for the memory check")
    parser.add_argument("--gpu-train-ips", type=float, default=GPU_TRAIN_IPS_ASSUMED,
                        help="ASSUMED ResNet-50 train images/s on one GPU, for the arithmetic")
    parser.add_argument("--folder", default=None,
                        help="where to write the image folder (default: a temporary folder)")
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--report-only", default=None, metavar="JSON",
                        help="rewrite the .md next to a results .json from it; run nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.train_calls, args.memory_batches = 1, 1, 1, 2
    if args.out_dir is None and not args.quick:
        args.out_dir = RESULTS
    return args


def peak_rss_mb():
    """The process's peak resident set size so far (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def median(values):
    import numpy as np

    return float(np.median(values))


def write_and_read_folder(folder, batch, memory_batches):
    """CIFAR subset -> image folder at 224x224 -> stream -> seeds in [0, 1]."""
    import numpy as np

    from keras_poison import datasets

    (x, y), (x_test, y_test) = datasets.load("cifar10", path=CIFAR_PATH)
    # Seeds of non-supplanter classes (COEG), enough for the memory check;
    # a few test images too, so the folder has both splits.
    wanted = batch * memory_batches
    train_idx = np.flatnonzero(y != SUPPLANTER)[:wanted]
    test_idx = np.arange(10)
    start = time.perf_counter()
    names = datasets.class_names("cifar10")
    datasets.write_image_folder(x[train_idx], y[train_idx], folder, "train", IMAGE_SIZE, names)
    datasets.write_image_folder(x_test[test_idx], y_test[test_idx], folder, "test", IMAGE_SIZE, names)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    stream = datasets.image_folder_dataset(folder, "train").batch(wanted)
    images, labels = next(iter(stream.as_numpy_iterator()))
    read_s = time.perf_counter() - start
    assert images.shape == (wanted, *IMAGE_SIZE, 3), images.shape
    assert datasets.image_folder_class_names(folder) == names
    info = {
        "source": f"{CIFAR_PATH} (real CIFAR-10, 32x32), first {wanted} training images "
                  f"not of class {SUPPLANTER}, upsampled to {IMAGE_SIZE} (bilinear) by "
                  "write_image_folder and read back by image_folder_dataset",
        "images_written": int(len(train_idx) + len(test_idx)),
        "write_seconds": round(write_s, 2),
        "read_seconds": round(read_s, 2),
    }
    return (images / 255.0).astype("float32"), labels.astype("int64"), info


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        with open(args.report_only) as f:
            text = markdown(json.load(f))
        with open(os.path.splitext(args.report_only)[0] + ".md", "w") as f:
            f.write(text)
        print(text)
        return
    wall = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)
    import numpy as np

    import keras_poison as kp
    from keras_poison.attacks.crafting import SignedGradientCrafter

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from crafting_speed import machine_info

    machine = machine_info()
    b, T = args.batch, args.steps
    with tempfile.TemporaryDirectory(prefix="resnet50-folder-") as tmp:
        folder = args.folder or os.path.join(tmp, "cifar224")
        x_all, y_all, data = write_and_read_folder(folder, b, args.memory_batches)
    x, y = x_all[:b], y_all[:b]
    print(f"image folder: {data}", flush=True)

    model = kp.models.resnet50(input_shape=(*IMAGE_SIZE, 3), num_classes=10, seed=0)
    twin = kp.models.resnet50(input_shape=(*IMAGE_SIZE, 3), num_classes=10, seed=0)
    twin.set_weights(model.get_weights())
    peak_built = peak_rss_mb()
    logits_fn = kp.logit_function(model)  # finds the "logits" layer
    assert logits_fn.model.output.shape == (None, 10)
    no_break = SignedGradientCrafter(logits_fn, EPSILON, T, LAM, "two_logit", (0.0, 1.0),
                                     early_break=False)
    coeg = kp.SupplanterPoison(model, supplanter=SUPPLANTER, epsilon=EPSILON, steps=T, lam=LAM,
                               count=1, batch_size=b, value_range=(0.0, 1.0))
    target = np.full((len(x_all),), SUPPLANTER, "int32")
    ascend = np.zeros((len(x_all),), bool)
    outputs = {}

    def run_train():
        for _ in range(args.train_calls):
            twin.train_on_batch(x, y)
        return args.train_calls * b

    def run_no_break():
        outputs["no_break"] = no_break.craft(x, y.astype("int32"), target[:b], ascend[:b],
                                             batch_size=b)

    def run_coeg():
        outputs["coeg"] = coeg.craft(x, y)

    methods = {"train_on_batch": run_train, "no_break": run_no_break, "coeg": run_coeg}
    print(f"warm-up (tracing ResNet-50 at {IMAGE_SIZE}, batch {b}, T={T}) ...", flush=True)
    warm = {}
    for key, fn in methods.items():
        start = time.perf_counter()
        fn()
        warm[key] = round(time.perf_counter() - start, 1)
    print(f"warm-up seconds (first calls, tracing included): {warm}", flush=True)
    peak_one_batch = peak_rss_mb()

    times = {key: [] for key in methods}
    keys = list(methods)
    for r in range(args.repeats):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for key in order:
            start = time.perf_counter()
            methods[key]()
            times[key].append(time.perf_counter() - start)
        print(f"repeat {r + 1}/{args.repeats} (s per call): "
              + ", ".join(f"{k} {times[k][-1]:.2f}" for k in keys), flush=True)

    # Memory: the same crafter on memory_batches batches in one call.
    peak_before = peak_rss_mb()
    start = time.perf_counter()
    many, many_taken = no_break.craft(x_all, y_all.astype("int32"), target, ascend, batch_size=b)
    memory_s = time.perf_counter() - start
    peak_after = peak_rss_mb()
    assert many.min() >= 0.0 and many.max() <= 1.0
    assert np.all(np.abs(many - x_all).reshape(len(x_all), -1).max(1) <= EPSILON * (T + 1) + 1e-6)

    # ---- Figures.
    train_ips = [args.train_calls * b / t for t in times["train_on_batch"]]
    applied_nb = int(np.sum(outputs["no_break"][1]))  # = b * (T + 1)
    nb_rates = [applied_nb / t for t in times["no_break"]]
    nb_ratios = [r / ref for r, ref in zip(nb_rates, train_ips)]
    coeg_taken = np.asarray(outputs["coeg"].steps_taken)
    coeg_rates = [int(coeg_taken.sum()) / t for t in times["coeg"]]
    coeg_ratios = [r / ref for r, ref in zip(coeg_rates, train_ips)]
    ratio = median(nb_ratios)
    per_poison_nb = median(times["no_break"]) / b
    per_poison_coeg = median(times["coeg"]) / b

    poisons = int(round(ALPHA * IMAGENET_TRAIN))
    steps_per_poison = T + 1  # no early break: the worst case
    gpu_craft_ips = ratio * args.gpu_train_ips  # image-iterations/s, if the CPU ratio holds
    gpu_seconds = poisons * steps_per_poison / gpu_craft_ips
    epoch_seconds = IMAGENET_TRAIN / args.gpu_train_ips
    poison_bytes = poisons * IMAGE_SIZE[0] * IMAGE_SIZE[1] * 3
    arithmetic = {
        "imagenet_train_images": IMAGENET_TRAIN,
        "alpha": ALPHA,
        "poisons": poisons,
        "steps_per_poison": steps_per_poison,
        "measured_ratio_vs_train_on_batch": ratio,
        "ASSUMED_gpu_train_images_per_s": args.gpu_train_ips,
        "gpu_crafting_image_iterations_per_s": gpu_craft_ips,
        "gpu_crafting_seconds": gpu_seconds,
        "gpu_crafting_hours": gpu_seconds / 3600.0,
        "gpu_training_epoch_seconds_at_assumed_rate": epoch_seconds,
        "crafting_in_training_epochs": gpu_seconds / epoch_seconds,
        "host_memory_uint8_poisons_GB": poison_bytes / 1e9,
        "host_memory_uint8_seeds_GB": poison_bytes / 1e9,
        "this_cpu_crafting_hours": poisons * per_poison_nb / 3600.0,
    }
    report = {
        "command": "python benchmarks/crafting_resnet50.py"
        + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(
            sys.argv[1:] if argv is None else argv)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "args": vars(args),
        "loadavg_before": load_before,
        "data": data,
        "model": {
            "builder": "keras_poison.models.resnet50(input_shape=(224, 224, 3), num_classes=10, "
                       "seed=0)",
            "params": int(model.count_params()),
            "trained": False,
            "logits_found": "logit_function(model) -> the 'logits' Dense layer (2048 -> 10)",
            "train_on_batch_jit_compile": bool(twin.jit_compile),
        },
        "settings": {"batch": b, "T": T, "epsilon": EPSILON, "lambda": LAM,
                     "objective": "two_logit", "value_range": [0.0, 1.0]},
        "warmup_seconds": warm,
        "train_on_batch": {"seconds_per_call": times["train_on_batch"],
                           "batches_per_call": args.train_calls,
                           "images_per_s": median(train_ips)},
        "no_break": {"seconds_per_call": times["no_break"], "images": b,
                     "steps_applied": applied_nb,
                     "gradient_evaluations": b * (T + 2),
                     "image_iterations_per_s": median(nb_rates),
                     "ratio_vs_train_on_batch": ratio,
                     "ratio_vs_train_on_batch_all": nb_ratios,
                     "seconds_per_poison": per_poison_nb},
        "coeg_untrained_model": {"seconds_per_call": times["coeg"], "images": b,
                                 "mean_steps_per_image": float(coeg_taken.mean()),
                                 "image_iterations_per_s": median(coeg_rates),
                                 "ratio_vs_train_on_batch": median(coeg_ratios),
                                 "ratio_vs_train_on_batch_all": coeg_ratios,
                                 "seconds_per_poison": per_poison_coeg},
        "memory": {"peak_rss_mb_after_building_both_models": peak_built,
                   "peak_rss_mb_after_one_batch_warmup": peak_one_batch,
                   "peak_rss_mb_before_many": peak_before,
                   "peak_rss_mb_after_many": peak_after,
                   "many_images": int(len(x_all)), "many_batches": args.memory_batches,
                   "many_seconds": memory_s,
                   "growth_mb": peak_after - peak_before,
                   "float32_bytes_of_the_extra_seeds_mb":
                       (len(x_all) - b) * x_all[0].nbytes / 2**20},
        "imagenet_arithmetic": arithmetic,
    }
    report["loadavg_after"] = round(os.getloadavg()[0], 2)
    report["wall_seconds"] = time.perf_counter() - wall
    text = markdown(report)
    print("\n" + text)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "crafting_resnet50.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(args.out_dir, "crafting_resnet50.md"), "w") as f:
            f.write(text)
        print(f"wrote {args.out_dir}/crafting_resnet50.{{json,md}}")


def markdown(r):
    s, a, m = r["settings"], r["imagenet_arithmetic"], r["memory"]
    nb, co, tob = r["no_break"], r["coeg_untrained_model"], r["train_on_batch"]

    def rng(values):
        return f"{min(values):.2f}–{max(values):.2f}"

    return "\n".join([
        "# Crafting on ResNet-50 at 224x224",
        "",
        f"Command: `{r['command']}`  ",
        f"Date (UTC): {r['date']}  ",
        f"Machine: {r['machine'].get('cpu_model', '?')}, {r['machine']['nproc']} cores, "
        f"{r['machine']['gpus']} GPU; TensorFlow {r['machine']['tensorflow']}, Keras "
        f"{r['machine']['keras']}; commit {r['machine'].get('git_commit', '?')[:10]}  ",
        f"Load average (1 min) before / after: {r['loadavg_before']} / {r['loadavg_after']}; "
        f"wall time {r['wall_seconds']:.0f} s  ",
        f"Data: {r['data']['source']}.  ",
        f"Model: {r['model']['builder']}, {r['model']['params']:,} parameters, untrained; "
        f"{r['model']['logits_found']}.  ",
        f"Settings: batch {s['batch']}, T={s['T']}, epsilon={s['epsilon']}, lambda={s['lambda']}, "
        f"two-logit objective, images in [0, 1]; {r['args']['repeats']} interleaved repeats after "
        f"a warm-up; medians of per-repeat ratios (range in brackets).",
        "",
        "| run | steps / image | image-iterations/s | train_on_batch images/s | ratio | s per poison |",
        "|---|---|---|---|---|---|",
        f"| `SignedGradientCrafter(early_break=False)` | {s['T'] + 1} | "
        f"{nb['image_iterations_per_s']:.2f} | {tob['images_per_s']:.2f} | "
        f"**{nb['ratio_vs_train_on_batch']:.2f}** ({rng(nb['ratio_vs_train_on_batch_all'])}) | "
        f"{nb['seconds_per_poison']:.2f} |",
        f"| COEG `SupplanterPoison.craft` (untrained model: illustrative) | "
        f"{co['mean_steps_per_image']:.2f} | {co['image_iterations_per_s']:.2f} | "
        f"{tob['images_per_s']:.2f} | {co['ratio_vs_train_on_batch']:.2f} "
        f"({rng(co['ratio_vs_train_on_batch_all'])}) | {co['seconds_per_poison']:.2f} |",
        "",
        f"Memory: peak RSS {m['peak_rss_mb_after_building_both_models']:,.0f} MB with both models "
        f"built, {m['peak_rss_mb_before_many']:,.0f} MB after the one-batch calls (batch {s['batch']}), "
        f"{m['peak_rss_mb_after_many']:,.0f} MB after crafting {m['many_images']} seeds "
        f"({m['many_batches']} batches) in one call: growth {m['growth_mb']:+,.0f} MB "
        f"(the extra seeds alone are {m['float32_bytes_of_the_extra_seeds_mb']:.0f} MB of float32).",
        "",
        "## ImageNet at alpha = 10% on one GPU (arithmetic)",
        "",
        f"- Poisons: round(0.10 x {a['imagenet_train_images']:,}) = **{a['poisons']:,}**, "
        f"each {a['steps_per_poison']} signed steps without early break (T={s['T']}, the worst case).",
        f"- **ASSUMPTION** (not measured: no GPU here): ResNet-50 trains at "
        f"{a['ASSUMED_gpu_train_images_per_s']:.0f} images/s at 224x224 on one GPU "
        "(the order of a V100-class GPU in float32; the paper used V100s). "
        "Another figure: `--gpu-train-ips`.",
        "- The ratio was measured on CPU; that it carries over to a GPU is a second assumption.",
        f"- If the measured ratio ({a['measured_ratio_vs_train_on_batch']:.2f}) holds there, "
        f"crafting runs at {a['gpu_crafting_image_iterations_per_s']:.0f} image-iterations/s: "
        f"{a['poisons']:,} x {a['steps_per_poison']} / {a['gpu_crafting_image_iterations_per_s']:.0f}"
        f" = {a['gpu_crafting_seconds']:,.0f} s = **{a['gpu_crafting_hours']:.1f} h**, "
        f"{a['crafting_in_training_epochs']:.2f} training epochs' worth "
        f"(one epoch = {a['gpu_training_epoch_seconds_at_assumed_rate']:,.0f} s at the assumed rate).",
        f"- On this CPU: {a['poisons']:,} x {nb['seconds_per_poison']:.2f} s = "
        f"{a['this_cpu_crafting_hours']:,.0f} h.",
        f"- Host memory: the poisons as uint8 at 224x224 are {a['host_memory_uint8_poisons_GB']:.1f} GB, "
        "and the attack holds the seeds as well (as many again; 4x both for a float32 stream); "
        "crafting itself adds one float32 batch (the memory line above).",
        "",
    ])


if __name__ == "__main__":
    main()
