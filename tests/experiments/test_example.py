"""examples/reproduce_seed000.py runs with tiny settings and says where the table is."""

import os
import runpy
import sys

import pytest

EXAMPLE = os.path.join(
    os.path.dirname(__file__), "..", "..", "examples", "reproduce_seed000.py"
)


def test_reproduce_seed000_example_runs_on_packaged_digits(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(
        sys, "argv",
        [EXAMPLE, "--epochs", "1", "--scenarios", "random_flip", "--out", str(out)],
    )
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(EXAMPLE, run_name="__main__")
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert f"The table is in {out / 'table.md'}" in printed
    assert "| random_flip |" in printed
    assert (out / "results.json").exists()
