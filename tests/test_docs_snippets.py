"""Every Python block of README.md, the docs' home page and the guides runs as written.

The blocks of one page run top to bottom in one namespace (a page's later
block may continue an earlier one, and says so), in a fresh Python process
and a fresh working directory, as a user pasting them would. To keep the
suite short, the runner shrinks what the snippets cannot:
`keras_poison.datasets.load` returns a stratified few hundred examples of
each split, and `Model.fit` runs at most one epoch. Nothing in the snippets
themselves is changed.

A block that cannot run here (it needs several machines) is marked on the
line before it with `<!-- snippet: not run, REASON -->`.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "docs" / "index.md", *sorted((REPO / "docs" / "guides").glob("*.md"))]
BLOCK = re.compile(r"(<!-- snippet: not run, (?P<reason>[^>]*)-->\s*\n)?```python\n(?P<code>.*?)```", re.S)
TRAIN_EXAMPLES, TEST_EXAMPLES = 600, 200

# Run in the child: shrink the data and the epochs, then each block in order.
RUNNER = r'''
import json, sys, warnings
import numpy as np
import keras
from keras_poison import datasets

blocks, page, train_size, test_size = json.load(sys.stdin)

def small(x, y, size):
    ranks = np.empty(len(y), np.int64)
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        ranks[members] = np.arange(len(members))
    keep = np.sort(np.argsort(ranks, kind="stable")[:size])   # every class kept
    return x[keep], y[keep]

load = datasets.load
def small_load(*args, **kwargs):
    (x_train, y_train), (x_test, y_test) = load(*args, **kwargs)
    return small(x_train, y_train, train_size), small(x_test, y_test, test_size)
datasets.load = small_load

fit = keras.Model.fit
def short_fit(self, *args, **kwargs):
    kwargs["epochs"] = min(kwargs.get("epochs", 1), 1)
    kwargs["verbose"] = 0
    return fit(self, *args, **kwargs)
keras.Model.fit = short_fit

namespace = {"__name__": "__snippets__"}
warnings.simplefilter("ignore")
for number, source in blocks:
    try:
        exec(compile(source, f"{page} block {number}", "exec"), namespace)
    except Exception as error:
        print(f"FAILED block {number}: {type(error).__name__}: {error}\n--- block ---\n{source}",
              file=sys.stderr)
        sys.exit(1)
'''


def blocks(page):
    """`(code, reason_not_run)` for each Python block of `page`, in order."""
    text = page.read_text(encoding="utf-8")
    return [(m.group("code"), m.group("reason")) for m in BLOCK.finditer(text)]


def _page_id(page):
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_snippets_run_as_written(page, tmp_path):
    runnable = [(n, code) for n, (code, reason) in enumerate(blocks(page), 1) if reason is None]
    if not runnable:
        pytest.skip(f"{_page_id(page)} has no runnable Python block")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([runnable, _page_id(page), TRAIN_EXAMPLES, TEST_EXAMPLES]),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
    )
    if run.returncode != 0:
        failure = run.stderr[run.stderr.find("FAILED block"):] or run.stderr[-3000:]
        pytest.fail(f"{_page_id(page)}: a Python block fails as written:\n{failure[-4000:]}")


def test_not_run_markers_say_why():
    for page in PAGES:
        for _, reason in blocks(page):
            assert reason is None or reason.strip(), f"{_page_id(page)}: a not-run marker without a reason"
