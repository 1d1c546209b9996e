"""`keras-poison run --list` and a run through the command line."""

import json
import os

from keras_poison import cli
from keras_poison import experiments


def test_list_shows_every_scenario_with_its_line(capsys):
    assert cli.main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    for name, description in experiments.list_scenarios():
        assert any(line.startswith(name) and description in line for line in out.splitlines()), name
    assert "epsilon=" in out  # the parameters and their defaults


def test_cli_run_writes_the_outputs(capsys, tmp_path, tiny_digits):
    status = cli.main(
        ["run", "baseline", "--data", tiny_digits, "--epochs", "1", "--batch-size", "128",
         "--no-plots", "--out", str(tmp_path)]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "[1/1] baseline (seed 0): accuracy" in out and "table.md" in out
    with open(tmp_path / "results.json") as f:
        assert list(json.load(f)["cells"]) == ["baseline|0"]
    assert not os.path.exists(tmp_path / "plots")
