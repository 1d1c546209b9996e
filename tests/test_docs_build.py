"""The documentation site builds without warnings and covers the public API.

`mkdocs build --strict` turns every warning into a failure: a broken link or
anchor, a page missing from the nav, a docstring griffe cannot parse, an
unresolved cross-reference. mkdocstrings reads the package statically (griffe),
so the build does not import TensorFlow and takes a few seconds.
"""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed")
pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")

REPO = pathlib.Path(__file__).resolve().parents[1]


def _public_names():
    """Names imported by `keras_poison/__init__.py`: the flat public API."""
    tree = ast.parse((REPO / "keras_poison" / "__init__.py").read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names.extend(alias.asname or alias.name for alias in node.names)
    return names


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed (exit {result.returncode}):\n{result.stderr[-5000:]}"
    )
    return site_dir


def _api_html(site):
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sorted((site / "api").rglob("*.html"))
    )


def test_strict_build_writes_every_page(site):
    for page in [
        "index.html",
        "concepts/index.html",
        "benchmarks/index.html",
        "guides/label_flipping/index.html",
        "guides/class_pattern/index.html",
        "guides/class_oriented/index.html",
        "guides/defences/index.html",
        "guides/detection/index.html",
        "api/attacks/index.html",
        "api/detectors/index.html",
    ]:
        assert (site / page).is_file(), page


def test_api_pages_render_docstrings(site):
    attacks = (site / "api" / "attacks" / "index.html").read_text(encoding="utf-8")
    detectors = (site / "api" / "detectors" / "index.html").read_text(encoding="utf-8")
    assert 'id="keras_poison.RandomFlip"' in attacks
    assert "uniformly drawn *different*" not in attacks  # Markdown was rendered
    assert "uniformly drawn <em>different</em>" in attacks
    assert 'id="keras_poison.DetectionReport"' in detectors
    # Keras-style `Example:` sections become highlighted doctest blocks, not
    # nested block quotes.
    assert '<span class="gp">&gt;&gt;&gt; </span>' in attacks
    assert "<blockquote>" not in attacks + detectors


def test_every_public_name_has_an_api_entry(site):
    html = _api_html(site)
    modules = {"datasets", "defences", "metrics", "models"}
    missing = []
    for name in _public_names():
        if name in modules:
            continue
        if not re.search(rf'id="keras_poison(\.\w+)*\.{re.escape(name)}"', html):
            missing.append(name)
    assert not missing, f"public names without an API reference entry: {missing}"
    for module in sorted(modules - {"defences"}):
        assert (site / "api" / module / "index.html").is_file(), module


def test_guide_code_blocks_are_valid_python():
    for page in sorted((REPO / "docs").rglob("*.md")):
        if page.name == "benchmarks.md":
            continue
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```python\n(.*?)```", text, re.S):
            try:
                ast.parse(block)
            except SyntaxError as error:
                pytest.fail(f"{page.relative_to(REPO)}: {error}\n{block}")
