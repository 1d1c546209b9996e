"""The experiment loop behind `keras-poison run`: cells, results, resume.

A *cell* is one scenario run with one seed. `run` checks every input before
any training, then runs the cells seed by seed (a scenario that needs
another, such as `targeted_flip` needing `baseline`'s confusion matrix, gets
it first), writing `results.json` after every finished cell (a temporary
file then `os.replace`, so an interrupted run never leaves a half-written
file and loses no finished cell), and finally `table.md` and the plots. A
second run into the same folder skips every finished cell.
"""

import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

from keras_poison._validation import validate_class
from keras_poison.experiments import scenarios as scenario_registry

RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
FORMAT_VERSION = 1
MODELS = ("vgg_like", "lenet5", "vgg9", "resnet50")
# "imagefolder": `data` is a folder DIR/<split>/<class>/<image> with train
# and test splits (keras_poison.datasets.load_image_folder).
DATASETS = ("cifar10", "mnist", "digits", "mnist5k", "imagefolder")
# The model each data set gets when none is named: the seed papers' choices
# (ResNet-50 for an ImageNet-style image folder), and vgg_like for 8x8
# digits (LeNet-5 needs at least 12x12).
DEFAULT_MODELS = {
    "cifar10": "vgg_like", "mnist": "lenet5", "digits": "vgg_like", "mnist5k": "lenet5",
    "imagefolder": "resnet50",
}


class ExperimentError(ValueError):
    """Bad input to `run`, found before any training.

    The command line turns it into a message and exit status 2.
    """


def run(
    scenarios,
    dataset=None,
    data=None,
    model=None,
    epochs=10,
    seeds=1,
    out=None,
    batch_size=64,
    learning_rate=1e-3,
    params=None,
    plots=True,
    verbose=0,
    log=None,
):
    """Runs scenarios × seeds, resumably, and returns every result.

    Each scenario (see `keras-poison run --list` or
    `keras_poison.experiments.SCENARIOS`) is run once per seed. Every input
    is checked before any training; bad input raises `ExperimentError`
    naming the argument, what was expected and what was received. With
    `out` set, `results.json` is rewritten after every finished cell, and
    cells already in it are skipped, so a run can be interrupted and
    started again; `table.md` and PNG plots are written at the end.

    Args:
        scenarios: a scenario name, a list of them, or `"all"`.
        dataset: `"cifar10"`, `"mnist"`, `"digits"`, `"mnist5k"` or
            `"imagefolder"`, or `None` for `"imagefolder"` when `data` is
            an image folder and `"digits"` (ships with scikit-learn)
            otherwise. Defaults to `None`.
        data: path to a local `.npz` (or a folder holding one) to load
            instead of the built-in source (CIFAR-10 and MNIST need it
            offline), or an image folder `DIR/<split>/<class>/<image>`
            with `train` and `test` splits of one image size, read by
            `keras_poison.datasets.load_image_folder` with 3 channels (its
            class folders name the classes). The harness holds the data in
            memory as float32: an image folder of a few thousand images,
            not ImageNet. Defaults to `None`.
        model: a builder of `keras_poison.models`: `"vgg_like"`,
            `"lenet5"`, `"vgg9"`, `"resnet50"`; or `None` for the data
            set's usual model (`lenet5` for the MNIST sets, `resnet50` for
            an image folder, else `vgg_like`). With `"resnet50"` and more
            than 5 classes the records report `top5_accuracy` beside the
            accuracy (top-1). Defaults to `None`.
        epochs: int >= 1, training epochs (from scratch, of the base model,
            and of fine-tuning unless `params["finetune_epochs"]` is set).
            Defaults to `10`.
        seeds: int >= 1, the number of seeds (0 … seeds-1), or a list of
            non-negative ints. Defaults to `1`.
        out: folder for `results.json`, `table.md` and the plots, created
            if needed; `None` writes nothing (and cannot resume). Defaults
            to `None`.
        batch_size: int >= 1. Defaults to `64` (seed 000).
        learning_rate: float > 0, Adam's learning rate when training from
            scratch. Defaults to `1e-3`.
        params: dict overriding scenario parameters, e.g.
            `{"epsilon": 8 / 255, "alphas": [0.1, 0.5]}`; every key must be
            a parameter of a chosen scenario. Defaults to `None`.
        plots: bool, whether to draw the PNG plots. Defaults to `True`.
        verbose: int, Keras `fit` verbosity. Defaults to `0`.
        log: function taking one line of progress, or `None` to print.
            Defaults to `None`.

    Returns:
        A dict (the content of `results.json`): `"config"`, `"versions"`,
        `"data"`, `"cells"` (keyed `"<scenario>|<seed>"`), `"summary"`
        (mean and standard deviation over seeds per scenario) and, with
        `out`, `"files"`.

    Example:

    ```python
    from keras_poison import experiments
    results = experiments.run(
        ["baseline", "random_flip"], dataset="digits", epochs=2, seeds=2,
        out="runs/digits",
    )
    results["summary"]["random_flip"]["accuracy"]   # {"mean": ..., "std": ..., "n": 2}
    ```
    """
    say = log or (lambda line: print(line, flush=True))
    settings = validate(
        scenarios, dataset, data, model, epochs, seeds, out, batch_size,
        learning_rate, params,
    )
    _quiet_tensorflow()
    loaded = _load_data(settings)
    _check_model(settings, loaded)
    _check_class_params(settings, loaded)
    results = _start_results(settings, loaded)
    todo = _plan(settings)
    say(
        f"keras-poison run: {len(todo)} cells ({len(settings['scenarios'])} scenarios × "
        f"{len(settings['seeds'])} seeds) on {settings['dataset']} "
        f"({loaded['n_train']} train / {loaded['n_test']} test), model {settings['model']}, "
        f"{settings['epochs']} epochs" + (f"; writing to {settings['out']}" if settings["out"] else "")
    )
    _run_cells(todo, settings, loaded, results, say, verbose)
    results["summary"] = summarize(results)
    if settings["out"]:
        results["files"] = write_outputs(results, settings["out"], plots, say)
        save(results, settings["out"])
    return results


# ----------------------------------------------------------------------
# Validation: everything is checked before any training.


def validate(scenarios, dataset, data, model, epochs, seeds, out, batch_size, learning_rate, params):
    """Checks the arguments of `run`; returns them normalised.

    Raises:
        ExperimentError: naming the bad argument, the expected and the
            received value.
    """
    names = _scenario_names(scenarios)
    data_path = _check_data_path(data)
    folder = data_path is not None and is_image_folder(data_path)
    if dataset is None:
        dataset = "imagefolder" if folder else "digits"
    if dataset not in DATASETS:
        raise ExperimentError(
            f"Expected `dataset` to be one of {list(DATASETS)}. Received: dataset={dataset!r}"
        )
    if dataset == "imagefolder" and not folder:
        raise ExperimentError(
            "Expected `data` to be an image folder DIR/<split>/<class>/<image> with "
            "train and test splits, for dataset='imagefolder'. Received: "
            f"data={data!r}"
            + ("" if data is not None else " (give the folder as `data`/--data)")
        )
    if model is None:
        model = DEFAULT_MODELS[dataset]
    if model not in MODELS:
        raise ExperimentError(
            f"Expected `model` to be one of {list(MODELS)}. Received: model={model!r}"
        )
    _check_int("epochs", epochs, 1)
    _check_int("batch_size", batch_size, 1)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
        learning_rate > 0 and math.isfinite(learning_rate)
    ):
        raise ExperimentError(
            f"Expected `learning_rate` > 0. Received: learning_rate={learning_rate!r}"
        )
    return {
        "scenarios": names,
        "dataset": dataset,
        "data": data_path,
        "model": model,
        "epochs": int(epochs),
        "seeds": _seed_list(seeds),
        "out": check_out(out),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "params": _check_params(params, names),
    }


def _scenario_names(scenarios):
    registry = scenario_registry.SCENARIOS
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    if not isinstance(scenarios, (list, tuple)) or not scenarios:
        raise ExperimentError(
            "Expected `scenarios` to be a scenario name, a non-empty list of them, or "
            f"'all'. Received: scenarios={scenarios!r}"
        )
    names = []
    for name in scenarios:
        if name == "all":
            names.extend(registry)
        elif name in registry:
            names.append(name)
        else:
            raise ExperimentError(
                f"Expected scenario names from {list(registry)} (or 'all'). "
                f"Received: unknown scenario {name!r}"
            )
    # Keep the first mention of each name.
    return list(dict.fromkeys(names))


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ExperimentError(f"Expected `{name}` >= {low}. Received: {name}={value!r}")


def _seed_list(seeds):
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        _check_int("seeds", seeds, 1)
        return list(range(int(seeds)))
    if isinstance(seeds, (list, tuple)) and seeds:
        for seed in seeds:
            _check_int("seeds", seed, 0)
        return list(dict.fromkeys(int(s) for s in seeds))
    raise ExperimentError(
        "Expected `seeds` to be a number of seeds >= 1 or a non-empty list of seeds "
        f">= 0. Received: seeds={seeds!r}"
    )


def _check_data_path(data):
    if data is None:
        return None
    path = os.path.abspath(os.fspath(data))
    if not os.path.exists(path):
        raise ExperimentError(
            f"Expected `data` to be an existing .npz file, a folder holding one, or an "
            f"image folder. Received: data={data!r}, which does not exist"
        )
    readable = os.access(path, os.R_OK) and (
        not os.path.isdir(path) or os.access(path, os.X_OK)
    )
    if not readable:
        raise ExperimentError(f"Expected `data` to be readable. Received: data={data!r}, which is not")
    if os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as error:
            raise ExperimentError(
                f"Expected `data` to be readable. Received: data={data!r} ({error})"
            ) from error
    return path


def check_out(out):
    """Creates the folder and writes a probe file, so a bad `out` fails now."""
    if out is None:
        return None
    path = os.path.abspath(os.fspath(out))
    probe = os.path.join(path, f".write-probe-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "w") as f:
            f.write("probe")
        os.remove(probe)
    except OSError as error:
        raise ExperimentError(
            f"Expected `out` to be a folder that can be created and written. "
            f"Received: out={out!r} ({type(error).__name__}: {error.strerror or error})"
        ) from error
    return path


def _declared_params(names):
    """`{param: default}` over the chosen scenarios."""
    declared = {}
    for name in names:
        declared.update(scenario_registry.SCENARIOS[name].params)
    return declared


def _check_params(params, names):
    params = dict(params or {})
    declared = _declared_params(names)
    for key, value in params.items():
        if key not in declared:
            raise ExperimentError(
                f"Expected `params` keys among the parameters of the chosen scenarios, "
                f"{sorted(declared)}. Received: {key}={value!r}"
            )
        _check_param_value(key, value)
    return params


_FRACTIONS = ("rate", "bias_ratio", "coes_rate")
_POSITIVE = (
    "epsilon", "craft_epsilon", "lam", "finetune_lr", "single_lr", "q", "dgm_lr", "dgm_gamma",
)
_COUNTS = {
    "folds": 2, "steps": 1, "set_size": 2, "set_batch": 1, "dgm_rounds": 1, "normal_size": 1,
}


def _check_param_value(key, value):
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if key in _FRACTIONS and not (number and 0 <= value <= 1):
        raise ExperimentError(f"Expected `{key}` in [0, 1]. Received: {key}={value!r}")
    if key in _POSITIVE and not (number and value > 0 and math.isfinite(value)):
        raise ExperimentError(f"Expected `{key}` > 0. Received: {key}={value!r}")
    if key in _COUNTS:
        _check_int(key, value, _COUNTS[key])
    if key == "finetune_epochs" and value is not None:
        _check_int(key, value, 1)
    if key == "alphas":
        ok = isinstance(value, (list, tuple)) and value and all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a <= 1 for a in value
        )
        if not ok:
            raise ExperimentError(
                f"Expected `alphas` to be a non-empty list of fractions in (0, 1]. "
                f"Received: alphas={value!r}"
            )
    if key == "policy" and value not in scenario_registry.SANITIZE_POLICIES:
        raise ExperimentError(
            f"Expected `policy` in {scenario_registry.SANITIZE_POLICIES}. "
            f"Received: policy={value!r}"
        )
    if key == "monitor" and not isinstance(value, str):
        raise ExperimentError(f"Expected `monitor` to be a str. Received: monitor={value!r}")


def _check_class_params(settings, loaded):
    k = loaded["num_classes"]
    for key in ("supplanter", "single_supplanter", "seed_class", "victim", "poison_label"):
        for name in settings["scenarios"]:
            params = _cell_params(settings, name)
            if key in params:
                try:
                    validate_class(key, params[key], k)
                except (TypeError, ValueError) as error:
                    raise ExperimentError(str(error)) from None
    for name in settings["scenarios"]:
        params = _cell_params(settings, name)
        if params.get("victim") is not None and params["victim"] == params.get("poison_label"):
            raise ExperimentError(
                "Expected `poison_label` to differ from `victim`. Received: "
                f"victim={params['victim']}, poison_label={params['poison_label']}"
            )
        if "seed_class" in params and params["seed_class"] == params["single_supplanter"]:
            raise ExperimentError(
                "Expected `seed_class` to differ from `single_supplanter`. Received: "
                f"both {params['seed_class']}"
            )


# ----------------------------------------------------------------------
# Data and model.


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def is_image_folder(path):
    """Whether `path` is a folder of subfolders and no `.npz` (read as an image folder)."""
    if not os.path.isdir(path):
        return False
    entries = os.listdir(path)
    return not any(f.endswith(".npz") for f in entries) and any(
        os.path.isdir(os.path.join(path, f)) for f in entries
    )


def _load_data(settings):
    """Loads the data set, scaled to [0, 1]; wraps load errors as `ExperimentError`."""
    from keras_poison import datasets

    folder = settings["data"] is not None and is_image_folder(settings["data"])
    try:
        if folder:
            (x_train, y_train), (x_test, y_test) = datasets.load_image_folder(
                settings["data"], split=("train", "test")
            )
            names = datasets.image_folder_class_names(settings["data"])
        else:
            (x_train, y_train), (x_test, y_test) = datasets.load(
                settings["dataset"], path=settings["data"]
            )
            names = datasets.class_names(settings["dataset"])
    except (OSError, ValueError) as error:
        if folder:
            hint = (
                " (the harness reads images at their stored size: write the folder at "
                "one size, e.g. keras_poison.datasets.write_image_folder(x, y, DIR, "
                "split=..., image_size=(224, 224)))"
                if "image_size" in str(error) else ""
            )
            raise ExperimentError(
                "Expected `data` to be an image folder DIR/<split>/<class>/<image> with "
                f"train and test splits of one image size{hint}. Received: "
                f"data={settings['data']!r} ({error})"
            ) from error
        hint = "" if settings["data"] else " (offline, give a local .npz as `data`/--data)"
        raise ExperimentError(
            f"Expected `data` to load as the {settings['dataset']!r} data set{hint}. "
            f"Received: data={settings['data']!r} ({error})"
        ) from error
    num_classes = int(max(y_train.max(), y_test.max()) + 1)
    if folder:
        num_classes = len(names)
    elif len(names) != num_classes:
        names = [str(k) for k in range(num_classes)]
    scale = 255.0 if np.issubdtype(x_train.dtype, np.integer) else 1.0
    return {
        "train": (x_train.astype("float32") / scale, y_train),
        "test": (x_test.astype("float32") / scale, y_test),
        "num_classes": num_classes,
        "class_names": names,
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "image_shape": list(x_train.shape[1:]),
    }


def _check_model(settings, loaded):
    """Builds the model once, so a model that cannot take these images fails now."""
    from keras_poison import models

    builder = getattr(models, settings["model"])
    try:
        builder(
            input_shape=tuple(loaded["image_shape"]),
            num_classes=loaded["num_classes"],
            compile=False,
        )
    except ValueError as error:
        fitting = [
            m for m in MODELS if m != settings["model"] and _builds(m, loaded)
        ]
        raise ExperimentError(
            f"Expected a `model` that takes the {settings['dataset']} images of shape "
            f"{tuple(loaded['image_shape'])}. Received: model={settings['model']!r} "
            f"({error}); models that fit: {fitting}"
        ) from error


def _builds(name, loaded):
    from keras_poison import models

    try:
        getattr(models, name)(
            input_shape=tuple(loaded["image_shape"]),
            num_classes=loaded["num_classes"],
            compile=False,
        )
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------
# Results and resume.


def versions():
    """Library, TensorFlow, Keras, NumPy and Python versions."""
    import keras
    import tensorflow as tf

    import keras_poison

    return {
        "keras_poison": keras_poison.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def cell_key(scenario, seed):
    return f"{scenario}|{seed}"


def _cell_params(settings, name):
    """A scenario's effective parameters: defaults updated by `params`."""
    defaults = scenario_registry.SCENARIOS[name].params
    params = dict(defaults)
    params.update({k: v for k, v in settings["params"].items() if k in defaults})
    return params


def _cell_config(settings, name, seed):
    config = {
        "scenario": name,
        "seed": seed,
        "dataset": settings["dataset"],
        "data": settings["data"],
        "model": settings["model"],
        "epochs": settings["epochs"],
        "batch_size": settings["batch_size"],
        "learning_rate": settings["learning_rate"],
        "params": _cell_params(settings, name),
    }
    # Through JSON, so it compares equal to the copy read back from disk.
    return json.loads(json.dumps(_clean_json(config)))


def _start_results(settings, loaded):
    """Reads an earlier `results.json` from `out`, or starts a new one."""
    results = None
    path = os.path.join(settings["out"], RESULTS_FILE) if settings["out"] else None
    if path and os.path.exists(path):
        try:
            with open(path) as f:
                results = json.load(f)
            if not isinstance(results.get("cells"), dict):
                raise ValueError("no 'cells' object")
        except (OSError, ValueError) as error:
            raise ExperimentError(
                f"Expected `out` to hold a results.json written by keras-poison run, or "
                f"none. Received: {path} ({error}); move it away or choose another out"
            ) from error
        _check_resumable(results, settings)
    now = utc_now()
    if results is None:
        results = {"format": FORMAT_VERSION, "cells": {}, "invocations": [], "created_utc": now}
    results["config"] = {
        key: settings[key]
        for key in ("dataset", "data", "model", "epochs", "batch_size", "learning_rate")
    }
    results["config"].update(
        {"scenarios": settings["scenarios"], "seeds": settings["seeds"], "params": settings["params"]}
    )
    results["versions"] = versions()
    results["data"] = {
        k: loaded[k] for k in ("n_train", "n_test", "image_shape", "num_classes", "class_names")
    }
    results["invocations"].append(
        {"date_utc": now, "argv": list(sys.argv), "config": _clean_json(results["config"])}
    )
    return results


def _check_resumable(results, settings):
    """Finished cells must have been run with the settings asked for now."""
    for name in settings["scenarios"]:
        for seed in settings["seeds"]:
            cell = results["cells"].get(cell_key(name, seed))
            if cell is None:
                continue
            wanted = _cell_config(settings, name, seed)
            if cell.get("config") != wanted:
                differences = [
                    f"{k}: {cell.get('config', {}).get(k)!r} then, {wanted[k]!r} now"
                    for k in wanted
                    if cell.get("config", {}).get(k) != wanted[k]
                ]
                raise ExperimentError(
                    f"Expected `out` to hold results of the same settings, to resume. "
                    f"Received: the finished cell {name} (seed {seed}) in "
                    f"{settings['out']} differs ({'; '.join(differences)}); choose another "
                    "out folder or remove that results.json"
                )


def _plan(settings):
    """The cells to consider, seed by seed, each after the cells it needs."""
    todo = []
    for seed in settings["seeds"]:
        ordered = []
        for name in settings["scenarios"]:
            for needed in scenario_registry.SCENARIOS[name].requires:
                if needed not in ordered:
                    ordered.append(needed)
            if name not in ordered:
                ordered.append(name)
        todo.extend((name, seed) for name in ordered)
    return todo


def _run_cells(todo, settings, loaded, results, say, verbose):
    if settings["out"]:
        _run_cells_with_cache(todo, settings, loaded, results, say, verbose,
                              os.path.join(settings["out"], "cache"))
        return
    import tempfile

    # Without an output folder nothing is resumed, so the base models need
    # only live as long as the run.
    with tempfile.TemporaryDirectory(prefix="keras-poison-run-") as folder:
        _run_cells_with_cache(todo, settings, loaded, results, say, verbose,
                              os.path.join(folder, "cache"))


def _run_cells_with_cache(todo, settings, loaded, results, say, verbose, cache_dir):
    shared = {}
    current_seed = None
    for position, (name, seed) in enumerate(todo, 1):
        key = cell_key(name, seed)
        prefix = f"[{position}/{len(todo)}] {name} (seed {seed})"
        if key in results["cells"]:
            say(f"{prefix}: finished earlier, skipped")
            continue
        if seed != current_seed:
            # A new seed: drop the last seed's base model and poisons.
            shared.clear()
            current_seed = seed
        say(f"{prefix}: running…")
        context = scenario_registry.CellContext(
            data=(loaded["train"], loaded["test"]),
            num_classes=loaded["num_classes"],
            class_names=loaded["class_names"],
            model=settings["model"],
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"],
            seed=seed,
            finished=lambda scenario, s: results["cells"].get(cell_key(scenario, s)),
            shared=shared,
            cache_dir=cache_dir,
            log=say,
            verbose=verbose,
        )
        results["cells"][key] = _run_cell(name, seed, context, settings)
        say(f"{prefix}: {_headline(results['cells'][key])}")
        if settings["out"]:
            results["summary"] = summarize(results)
            save(results, settings["out"])
            _write_table(results, settings["out"])


def _run_cell(name, seed, context, settings):
    scenario = scenario_registry.SCENARIOS[name]
    params = _cell_params(settings, name)
    started = utc_now()
    start = time.perf_counter()
    record = scenario.function(context, params)
    record = _clean_json(record)
    record.update(
        {
            "scenario": name,
            "family": scenario.family,
            "description": scenario.description,
            "seed": seed,
            "config": _cell_config(settings, name, seed),
            "versions": versions(),
            "started_utc": started,
            "seconds": time.perf_counter() - start,
        }
    )
    return record


def _headline(cell):
    parts = []
    if "alphas" in cell:
        for alpha, sub in cell["alphas"].items():
            parts.append(
                f"α={alpha} CTT {sub['ctt']:+.3f} acc {sub['accuracy']:.3f}"
                + (f" top-5 {sub['top5_accuracy']:.3f}" if sub.get("top5_accuracy") is not None else "")
            )
    else:
        parts.append(f"accuracy {cell['accuracy']:.3f}, macro-F1 {cell['macro_f1']:.3f}")
        if cell.get("top5_accuracy") is not None:
            parts.append(f"top-5 {cell['top5_accuracy']:.3f}")
        if cell.get("ctt") is not None:
            parts.append(f"CTT {cell['ctt']:+.3f}")
        if cell.get("victim_cft") is not None:
            parts.append(f"victim CFT {cell['victim_cft']:+.3f}")
    return "; ".join(parts) + f" ({cell['seconds']:.1f} s)"


# Figures averaged over seeds in `summary` and the tables.
SUMMARY_KEYS = (
    "accuracy", "top5_accuracy", "accuracy_last5", "macro_f1", "train_accuracy", "poisoned_fraction", "ctt", "test_error",
    "victim_cft", "max_non_victim_cft", "seconds",
)


def variants(cell):
    """`(variant, record)` pairs of a cell: one per α for set attacks, else one."""
    if "alphas" in cell:
        return [(f"α={alpha}", sub) for alpha, sub in cell["alphas"].items()]
    return [("", cell)]


def summarize(results):
    """Mean, sample standard deviation and count over seeds, per scenario and variant.

    Returns:
        `{scenario: {figure: {"mean", "std", "n"}}}`, with set attacks keyed
        `"<scenario> α=<alpha>"`.
    """
    grouped = {}
    for cell in results["cells"].values():
        for variant, record in variants(cell):
            row = f"{cell['scenario']} {variant}".strip()
            for key in SUMMARY_KEYS:
                value = record.get(key, cell.get(key) if key == "seconds" else None)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    grouped.setdefault(row, {}).setdefault(key, []).append(float(value))
    return {
        row: {key: mean_std(values) for key, values in figures.items()}
        for row, figures in grouped.items()
    }


def mean_std(values):
    """`{"mean", "std", "n"}`; `std` is the sample standard deviation (0 for one value)."""
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "n": int(len(values))}


def save(results, out):
    """Writes results.json atomically: a temporary file, then `os.replace`."""
    path = os.path.join(out, RESULTS_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_clean_json(results), f, indent=1)
    os.replace(tmp, path)


def _write_table(results, out):
    from keras_poison.experiments import tables

    tmp = os.path.join(out, f"{TABLE_FILE}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(tables.markdown(results))
    os.replace(tmp, os.path.join(out, TABLE_FILE))


def write_outputs(results, out, plots, say):
    _write_table(results, out)
    files = [TABLE_FILE, RESULTS_FILE]
    if plots:
        from keras_poison.experiments import plots as plotting

        files += plotting.write_plots(results, out)
    say(f"Wrote {os.path.join(out, TABLE_FILE)}, {RESULTS_FILE} and {len(files) - 2} plots in {out}")
    return files


def _clean_json(value):
    """NaN/inf → None, NumPy → Python, tuples → lists, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------
# Command-line parameters.


def parse_seeds(text):
    """`--seeds` from the command line: `"3"` → 3 (seeds 0, 1, 2), `"1,2"` → `[1, 2]`."""
    text = str(text)
    parts = [part.strip() for part in text.split(",")]
    if "," in text:
        parts = [part for part in parts if part]  # "2," names seed 2
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ExperimentError(
            "Expected `--seeds` to be a number of seeds K (seeds 0..K-1) or a "
            f"comma-separated list of seeds such as 1,2. Received: --seeds {text}"
        ) from None
    # One number is a count; a list (even of one, "2,") names the seeds.
    return numbers if "," in text else numbers[0]


def parse_params(items):
    """Parses `KEY=VALUE` strings (`--param`) into a `params` dict.

    Each value is read as the type of the parameter's default: numbers
    (fractions such as `8/255` allowed), comma-separated lists of numbers
    (`alphas=0.1,0.5`), `true`/`false`, `none`, or text.

    Args:
        items: iterable of `"KEY=VALUE"` strings.

    Returns:
        A dict for `run(params=...)`.

    Raises:
        ExperimentError: for a string without `=`, an unknown key, or a
            value that does not read as the parameter's type.

    Example:

    >>> parse_params(["epsilon=8/255", "alphas=0.1,0.5"])["alphas"]
    [0.1, 0.5]
    """
    defaults = _declared_params(list(scenario_registry.SCENARIOS))
    params = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep:
            raise ExperimentError(f"Expected `--param KEY=VALUE`. Received: --param {item!r}")
        if key not in defaults:
            raise ExperimentError(
                f"Expected a `--param` key among {sorted(defaults)}. Received: {key!r}"
            )
        try:
            params[key] = _parse_value(text.strip(), defaults[key])
        except ValueError as error:
            raise ExperimentError(
                f"Expected `{key}` of the form of its default {defaults[key]!r}. "
                f"Received: {key}={text!r} ({error})"
            ) from error
    return params


def _parse_value(text, default):
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("not true or false")
        return text.lower() in ("true", "1", "yes")
    if isinstance(default, (list, tuple)):
        return [_number(part) for part in text.split(",") if part.strip()]
    if isinstance(default, str):
        return text
    if text.lower() == "none":
        return None
    value = _number(text)
    if isinstance(default, int) or default is None:
        if value != int(value):
            raise ValueError("not a whole number")
        return int(value)
    return float(value)


def _number(text):
    numerator, slash, denominator = text.partition("/")
    value = float(numerator)
    return value / float(denominator) if slash else value
