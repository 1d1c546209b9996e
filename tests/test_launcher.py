"""The `keras-poison` launcher: answers without TensorFlow, keeps TF's native log quiet.

Each check that is about what a fresh process imports runs in a subprocess
(this test process has TensorFlow loaded already). No timings here: the
start-up figures are in docs/benchmarks.md (benchmarks/startup.py).
"""

import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_poison_cli
from keras_poison import demo
from keras_poison import experiments

NOT_LOADED = (
    "import sys\n"
    "heavy = sorted(m for m in ('tensorflow', 'keras', 'keras_poison', 'sklearn', 'matplotlib')"
    " if m in sys.modules)\n"
    "assert not heavy, heavy\n"
)


def run_python(code, env=None):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


def launcher_then_check(argv):
    """Runs `keras_poison_cli.main(argv)` in a fresh process, then the import check."""
    return run_python(
        "import sys, keras_poison_cli\n"
        "try:\n"
        f"    status = keras_poison_cli.main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    status = exit.code\n"
        + NOT_LOADED
        + "print('STATUS', status)\n"
    )


def test_the_console_script_is_the_launcher():
    (entry,) = [
        e for e in importlib.metadata.entry_points(group="console_scripts")
        if e.name == "keras-poison"
    ]
    assert entry.value == "keras_poison_cli:main"


@pytest.mark.parametrize(
    "argv, status",
    [
        (["--help"], 0),
        (["run", "--help"], 0),
        (["demo", "--dataset", "imagenet"], 2),  # argparse's choice error
        (["demo", "--epochs", "x"], 2),
        (["run", "baseline"], 2),  # no --out
        (["run", "no_such_scenario", "--out", "somewhere"], 2),
        (["run"], 2),  # no scenario
        (["manifest", "verify", "--data", "missing.npz", "--manifest", "m.json"], 2),
    ],
)
def test_help_and_argument_errors_answer_without_importing_tensorflow(argv, status):
    result = launcher_then_check(argv)
    assert result.returncode == 0, result.stderr
    assert f"STATUS {status}" in result.stdout


def test_run_list_in_a_fresh_process_lists_the_registry_without_tensorflow():
    result = launcher_then_check(["run", "--list"])
    assert result.returncode == 0, result.stderr
    assert "STATUS 0" in result.stdout
    for name, description in experiments.list_scenarios():
        assert f"{name}" in result.stdout and description in result.stdout
    for name, scenario in experiments.SCENARIOS.items():
        shown = ", ".join(
            f"{k}={keras_poison_cli.shown_value(v)}" for k, v in scenario.params.items()
        )
        assert f"  {name}: {shown or 'none'}" in result.stdout


def test_run_list_is_the_same_in_process_and_in_a_fresh_process(capsys):
    assert keras_poison_cli.main(["run", "--list"]) == 0
    in_process = capsys.readouterr().out
    fresh = run_python("import keras_poison_cli; keras_poison_cli.main(['run', '--list'])")
    assert fresh.stdout == in_process


def test_argument_errors_name_the_argument_and_the_choices(capsys):
    assert keras_poison_cli.main(["run", "no_such_scenario", "--out", "x"]) == 2
    error = capsys.readouterr().err
    assert "'no_such_scenario'" in error and "baseline" in error
    assert keras_poison_cli.main(["manifest", "create", "--data", "nope.npz", "--out", "m"]) == 2
    assert "--data 'nope.npz' is not a file" in capsys.readouterr().err


def test_demo_datasets_are_the_demos_own():
    assert sorted(keras_poison_cli.DEMO_DATASETS) == sorted(demo.DATASET_MODELS)


@pytest.fixture
def tiny_npz(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=np.zeros((3, 2, 2, 3), "uint8"), y_train=np.arange(3))
    return path


def test_a_command_that_loads_tensorflow_keeps_its_native_log_out_of_stderr(tiny_npz, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "keras_poison_cli", "manifest", "create",
         "--data", str(tiny_npz), "--out", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote a manifest of 3 examples" in result.stdout
    assert result.stderr == ""


def test_native_output_is_held_back_and_replayed_only_when_the_block_fails(capfd):
    with keras_poison_cli.native_stderr_held_back():
        os.write(2, b"native start-up notice\n")
    assert "native start-up notice" not in capfd.readouterr().err
    with pytest.raises(ImportError):
        with keras_poison_cli.native_stderr_held_back():
            os.write(2, b"why it failed\n")
            raise ImportError("no such library")
    assert "why it failed" in capfd.readouterr().err
    os.write(2, b"after\n")  # the descriptor is restored
    assert "after" in capfd.readouterr().err
