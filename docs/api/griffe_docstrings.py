"""Griffe extension used by the documentation build (not part of the package).

The package's docstrings follow Keras' own layout, where the doctest lines of
an `Example:` section sit at the section title's indentation:

    Example:

    >>> attack = RandomFlip(rate=0.2, num_classes=10)

Google style, as griffe parses it, wants the section's content indented under
its title; otherwise the `>>>` lines are rendered as Markdown text (nested
block quotes, and `[...]` outputs taken for cross-references). This extension
indents such sections before griffe parses them, so they render as Examples
sections with highlighted `pycon` blocks (griffe reads the singular
`Example:` as an admonition, so the title becomes `Examples:`). It also splits an `Args:` entry that
documents several parameters at once (`a, b, c: as for X.`) into one entry per
name, since Google style has one name per entry.

Nothing is changed in the package: only the text griffe renders.
"""

import re

import griffe

_SECTION_TITLE = re.compile(
    r"^(?P<indent>\s*)(?P<title>Args|Arguments|Parameters|Returns|Return|Raises|"
    r"Attributes|Yields|Note|Notes|Warning|Warnings|References|Example|Examples)"
    r":\s*$"
)
_NAME_LIST = re.compile(r"^\w+(\s*,\s*\w+)+$")


def _indent_of(line):
    return len(line) - len(line.lstrip(" "))


def indent_example_sections(text):
    """Indents the content of `Example:` sections written flush with their title."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _SECTION_TITLE.match(line)
        if not match or match["title"] not in ("Example", "Examples"):
            out.append(line)
            i += 1
            continue
        indent = len(match["indent"])
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j == len(lines) or _indent_of(lines[j]) > indent:
            # Empty, or already indented under its title: only the title.
            out.append(line.replace("Example:", "Examples:"))
            i += 1
            continue
        # Griffe reads `Example:` as an admonition; `Examples:` is the
        # section that turns `>>>` lines into code blocks.
        out.append(line.replace("Example:", "Examples:") if match["title"] == "Example" else line)
        # The section runs to the next section title at the same depth.
        k = j
        while k < len(lines):
            other = _SECTION_TITLE.match(lines[k])
            if other and len(other["indent"]) <= indent:
                break
            k += 1
        body = lines[j:k]
        while body and not body[-1].strip():
            body.pop()
        out.extend(("    " + b) if b.strip() else "" for b in body)
        if k < len(lines):
            out.append("")
        i = k
    return "\n".join(out)


def split_grouped_args(text):
    """Splits `a, b, c: description` entries of `Args:` into one per name."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        match = _SECTION_TITLE.match(lines[i])
        out.append(lines[i])
        i += 1
        if not match or match["title"] not in ("Args", "Arguments", "Parameters"):
            continue
        section_indent = len(match["indent"])
        while i < len(lines) and (
            not lines[i].strip() or _indent_of(lines[i]) > section_indent
        ):
            item_indent = _indent_of(lines[i])
            j = i + 1
            # A list of names may run over several lines: `a, b,` / `c: ...`.
            while (
                j < len(lines)
                and ":" not in lines[j - 1]
                and lines[j - 1].rstrip().endswith(",")
                and _indent_of(lines[j]) == item_indent
            ):
                j += 1
            while j < len(lines) and lines[j].strip() and _indent_of(lines[j]) > item_indent:
                j += 1
            item = lines[i:j]
            joined = " ".join(part.strip() for part in item)
            head, colon, description = joined.partition(":")
            if lines[i].strip() and colon and _NAME_LIST.match(head.strip()):
                pad = " " * item_indent
                for name in head.split(","):
                    out.append(f"{pad}{name.strip()}: {description.strip()}")
            else:
                out.extend(item)
            i = j
    return "\n".join(out)


class KerasStyleDocstrings(griffe.Extension):
    """Rewrites docstrings as described in the module docstring."""

    def on_instance(self, *, obj, **kwargs):
        docstring = getattr(obj, "docstring", None)
        if docstring is None or not docstring.value:
            return
        docstring.value = split_grouped_args(indent_example_sections(docstring.value))
