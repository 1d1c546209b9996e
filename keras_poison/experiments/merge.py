"""Combining runs made in parallel: `keras-poison merge`.

A cell depends only on its own settings (scenario, seed, data, model,
training and parameters, all kept in its `config`), so a table too slow for
one process can be split by seed or by scenario over several processes,
machines or GPUs, each writing its own folder, and merged afterwards. The
merged `results.json` is an ordinary one: `keras-poison run` into the merged
folder resumes from it, skipping every cell it holds.
"""

import json
import os
import sys

from keras_poison.experiments import runner

# Settings every merged run must share: the table's header states them once.
SHARED_SETTINGS = ("dataset", "data", "model", "epochs", "batch_size", "learning_rate")


def merge(sources, out, plots=True, log=None):
    """Merges the `results.json` of several runs into `out`, with its table and plots.

    Runs merge when they used the same data set, data file, model, epochs,
    batch size and learning rate. A cell found in several runs is kept once
    if its settings agree everywhere, and is an error otherwise. A
    `results.json` already in `out` is merged too, so runs can be added one
    at a time.

    Args:
        sources: a folder written by `keras-poison run` (or the path of its
            `results.json`), or a non-empty list of them.
        out: folder for the merged `results.json`, `table.md` and plots,
            created if needed.
        plots: bool, whether to draw the PNG plots. Defaults to `True`.
        log: function taking one line of progress, or `None` to print.
            Defaults to `None`.

    Returns:
        The merged results (the content of the merged `results.json`).

    Raises:
        ExperimentError: a source that is missing or not a run's results,
            runs of different settings, or one cell with two different
            settings; nothing is written then.

    Example:

    ```python
    from keras_poison import experiments
    # Two processes, one per seed, then one table with mean ± std:
    #   keras-poison run baseline random_flip --seeds 0 --out runs/s0
    #   keras-poison run baseline random_flip --seeds 1 --out runs/s1
    merged = experiments.merge(["runs/s0", "runs/s1"], out="runs/all")
    merged["summary"]["random_flip"]["accuracy"]["n"]   # 2
    ```
    """
    say = log or (lambda line: print(line, flush=True))
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)) or not sources:
        raise runner.ExperimentError(
            "Expected `sources` to be a run's folder or a non-empty list of them. "
            f"Received: sources={sources!r}"
        )
    out = runner.check_out(out)
    paths = [_results_path(source) for source in sources]
    existing = os.path.join(out, runner.RESULTS_FILE)
    if os.path.exists(existing) and existing not in paths:
        paths.insert(0, existing)
    runs = [(path, _load(path)) for path in paths]

    merged = _combine(runs)
    merged["summary"] = runner.summarize(merged)
    merged["files"] = runner.write_outputs(merged, out, plots, say)
    runner.save(merged, out)
    say(
        f"Merged {len(merged['cells'])} cells from {len(runs)} runs "
        f"({len(merged['config']['scenarios'])} scenarios, seeds {merged['config']['seeds']})"
    )
    return merged


def _results_path(source):
    path = os.path.abspath(os.fspath(source))
    if os.path.isdir(path):
        path = os.path.join(path, runner.RESULTS_FILE)
    if not os.path.isfile(path):
        raise runner.ExperimentError(
            "Expected each source to be a folder written by keras-poison run (holding "
            f"{runner.RESULTS_FILE}) or such a file. Received: {source!r}, where there is none"
        )
    return path


def _load(path):
    try:
        with open(path) as f:
            results = json.load(f)
        for key in ("cells", "config", "data"):
            if not isinstance(results.get(key), dict):
                raise ValueError(f"no {key!r} object")
    except (OSError, ValueError) as error:
        raise runner.ExperimentError(
            f"Expected {runner.RESULTS_FILE} written by keras-poison run. "
            f"Received: {path} ({error})"
        ) from error
    return results


def _combine(runs):
    """One results dict from `[(path, results), ...]`; the first run sets the settings."""
    first_path, first = runs[0]
    merged = {
        "format": runner.FORMAT_VERSION,
        "cells": {},
        "invocations": [],
        "created_utc": min(r.get("created_utc", "") for _, r in runs) or runner.utc_now(),
        "config": {key: first["config"].get(key) for key in SHARED_SETTINGS},
        "versions": first.get("versions", runner.versions()),
        "data": first["data"],
    }
    scenarios, seeds, params = [], set(), {}
    for path, results in runs:
        _check_same_settings(first_path, first, path, results)
        for key, cell in results["cells"].items():
            kept = merged["cells"].get(key)
            if kept is None:
                merged["cells"][key] = cell
            elif kept.get("config") != cell.get("config"):
                raise runner.ExperimentError(
                    f"Expected a cell found in several runs to have the same settings in "
                    f"each. Received: cell {key!r} with {kept.get('config')} and, in "
                    f"{path}, {cell.get('config')}"
                )
        config = results["config"]
        scenarios.extend(config.get("scenarios", []))
        seeds.update(config.get("seeds", []))
        for name, value in (config.get("params") or {}).items():
            if name in params and params[name] != value:
                raise runner.ExperimentError(
                    f"Expected the runs to set each parameter alike. Received: {name}="
                    f"{params[name]!r} in one run and {name}={value!r} in {path}"
                )
            params[name] = value
        merged["invocations"].extend(results.get("invocations", []))
    merged["config"].update(
        {"scenarios": list(dict.fromkeys(scenarios)), "seeds": sorted(seeds), "params": params}
    )
    merged["invocations"].append(
        {"date_utc": runner.utc_now(), "argv": list(sys.argv), "merged_from": [p for p, _ in runs]}
    )
    return merged


def _check_same_settings(first_path, first, path, results):
    for key in SHARED_SETTINGS:
        if results["config"].get(key) != first["config"].get(key):
            raise runner.ExperimentError(
                f"Expected runs of the same settings ({', '.join(SHARED_SETTINGS)}). "
                f"Received: {key}={first['config'].get(key)!r} in {first_path} and "
                f"{key}={results['config'].get(key)!r} in {path}"
            )
    if results["data"] != first["data"]:
        raise runner.ExperimentError(
            f"Expected runs on the same data. Received: {first['data']} in {first_path} "
            f"and {results['data']} in {path}"
        )
