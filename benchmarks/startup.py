"""Start-up time of the `keras-poison` command and of `import keras_poison` (issue 18 §2).

Each measurement is one fresh Python process, timed from launch to exit
(wall clock). The commands are interleaved: every repeat runs each of them
once, in the same order, after one warm-up round that fills the OS file
cache; the figure is the median over the repeats. Commands:

* `keras-poison --help`, `keras-poison run --list` and a wrong-argument
  error (`keras-poison run baseline`, no `--out`): the launcher
  (`keras_poison_cli`), which answers without importing TensorFlow;
* the same `--help` through the package's module, `python -m keras_poison.cli
  --help`, which imports the package (and so TensorFlow) first: what every
  command cost before the launcher;
* `python -c "import tensorflow, keras"` against `python -c "import
  keras_poison"`: what the library adds to the import a Keras user pays
  anyway.

Also recorded: whether each launcher command's stderr is empty (TensorFlow's
native start-up log held back), for a command that does load TensorFlow
(`keras-poison manifest create` on a 3-example file).

Usage: python benchmarks/startup.py [--repeats 7] [--out benchmarks/results/startup.json]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine_info  # noqa: E402


def commands(console_script, workdir):
    python = sys.executable
    tiny = os.path.join(workdir, "tiny.npz")
    return {
        "keras-poison --help": [console_script, "--help"],
        "keras-poison run --list": [console_script, "run", "--list"],
        "keras-poison run baseline (error: no --out)": [console_script, "run", "baseline"],
        "keras-poison manifest create (loads TensorFlow)": [
            console_script, "manifest", "create", "--data", tiny,
            "--out", os.path.join(workdir, "m.json"),
        ],
        "python -m keras_poison.cli --help (the package first)": [
            python, "-m", "keras_poison.cli", "--help",
        ],
        'python -c "import tensorflow, keras"': [python, "-c", "import tensorflow, keras"],
        'python -c "import keras_poison"': [python, "-c", "import keras_poison"],
    }


def time_once(argv, env):
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "startup.json"))
    args = parser.parse_args()

    console_script = shutil.which("keras-poison")
    if console_script is None:
        raise SystemExit("keras-poison is not on PATH: pip install -e . first")
    # The user's environment as it is, without a log level of our own.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    with tempfile.TemporaryDirectory() as workdir:
        import numpy as np

        np.savez(os.path.join(workdir, "tiny.npz"),
                 x_train=np.zeros((3, 2, 2, 3), "uint8"), y_train=np.arange(3))
        table = commands(console_script, workdir)
        seconds = {name: [] for name in table}
        stderr_lines = {}
        for round_index in range(args.repeats + 1):  # round 0 warms the file cache
            for name, argv in table.items():
                elapsed, result = time_once(argv, env)
                if round_index:
                    seconds[name].append(elapsed)
                stderr_lines[name] = len(result.stderr.splitlines())
            print(f"round {round_index} done", flush=True)

    medians = {name: statistics.median(values) for name, values in seconds.items()}
    report = {
        "command": "python benchmarks/startup.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "repeats": args.repeats,
        "median_seconds": medians,
        "all_seconds": seconds,
        "stderr_lines": stderr_lines,
        "import_keras_poison_minus_tensorflow_keras_s": (
            medians['python -c "import keras_poison"']
            - medians['python -c "import tensorflow, keras"']
        ),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    width = max(map(len, medians))
    for name, value in medians.items():
        print(f"{name:<{width}}  {value:6.2f} s  (stderr lines: {stderr_lines[name]})")
    print(f"import keras_poison - import tensorflow, keras: "
          f"{report['import_keras_poison_minus_tensorflow_keras_s']:+.2f} s")


if __name__ == "__main__":
    main()
