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
name, since Google style has one name per entry, and moves the type that
starts a Keras-style entry (`rate: float in [0, 1], the fraction...`) into
Google style's `name (type):` slot, so the pages' Type column shows it.

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


# Words a Keras-style `name: TYPE, description` entry starts its type with.
_TYPE_START = re.compile(
    r"^(int|float|bool|str|string|list|tuple|dict|array|arrays|callable|function|"
    r"None|`None`|object|a|an|one|`\(|`[\w.]+`|\(|\w+\.\w+)\b"
)
_ARG_ITEM = re.compile(r"^(?P<pad>\s*)(?P<name>\*{0,2}\w+):\s+(?P<rest>.*)$")


def _type_phrase(text):
    """The leading type of a description (`float in [0, 1], the rate` -> `float in [0, 1]`)."""
    depth, in_code = 0, False
    for i, char in enumerate(text):
        if char == "`":
            in_code = not in_code
        elif in_code:
            continue
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and (text.startswith(", ", i) or text.startswith("; ", i)):
            phrase, rest = text[:i], text[i + 2 :]
            if rest.startswith("or "):  # `int, or None to ...`: both are the type
                more, rest = _type_phrase(rest)
                if more is None:
                    return None, text
                phrase = f"{phrase} {more}"
            return phrase, rest
    return None, text


def typed_args(text):
    """Moves the type that starts an `Args:` description into the entry's
    `name (type):` slot, so the API page's Type column shows it."""
    lines = text.split("\n")
    out = []
    in_args, section_indent, item_indent = False, 0, None
    for line in lines:
        title = _SECTION_TITLE.match(line)
        if title:
            in_args = title["title"] in ("Args", "Arguments", "Parameters")
            section_indent, item_indent = len(title["indent"]), None
            out.append(line)
            continue
        match = _ARG_ITEM.match(line) if in_args else None
        if line.strip() and _indent_of(line) <= section_indent:
            in_args = False
        if match and (item_indent is None or len(match["pad"]) == item_indent):
            item_indent = len(match["pad"])
            phrase, rest = _type_phrase(match["rest"])
            if phrase and ":" not in phrase and len(phrase) <= 80 and _TYPE_START.match(phrase):
                line = f"{match['pad']}{match['name']} ({phrase}): {rest}"
        out.append(line)
    return "\n".join(out)


class KerasStyleDocstrings(griffe.Extension):
    """Rewrites docstrings as described in the module docstring."""

    def on_instance(self, *, obj, **kwargs):
        docstring = getattr(obj, "docstring", None)
        if docstring is None or not docstring.value:
            return
        docstring.value = typed_args(split_grouped_args(indent_example_sections(docstring.value)))
