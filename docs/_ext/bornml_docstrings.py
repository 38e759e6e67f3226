"""Sphinx extension: read bornml's docstrings as they are written.

The docstrings are plain text meant for ``help()`` and the source: physics notation in prose
(``|Σ_j Z_j|``, ``ω·|w|²``), equations indented under the sentence that introduces them, and
``-`` lists that start right under a line of text. reStructuredText reads these differently
(``|x|`` is a substitution, an indented block after a paragraph is an error, a list needs a
blank line before it), so before napoleon and autodoc parse a docstring this hook

1. shows an indented block that follows a blank line and a less indented paragraph as a
   literal block (as if the paragraph ended with ``::``), so equations keep their layout;
2. puts a blank line before a ``-``/``*`` list that starts right under text, and after a list
   that text follows directly;
3. escapes every ``|`` outside inline literals, literal blocks and tables.

Nothing else is changed; the docstrings themselves stay as they are.
"""

import re

LITERAL = re.compile(r"(``.*?``)")
BULLET = re.compile(r"^\s*[-*] \S")


def _indent(line):
    return len(line) - len(line.lstrip())


def _escape_bars(line):
    parts = LITERAL.split(line)
    return "".join(part if part.startswith("``") else part.replace("|", r"\|")
                   for part in parts)


def rewrite(lines):
    """The docstring ``lines`` with rules 1–3 of the module docstring applied (a new list)."""
    out = []
    literal_indent = None  # indentation of the paragraph that opened a literal block
    list_indent = None  # indentation of the bullets of the list being read
    last_text = None  # last non-blank line before the current run of blank lines
    last_position = None  # its index in ``out``
    blank_before = False
    for line in lines:
        stripped = line.strip()
        if not stripped:
            out.append(line)
            blank_before = True
            continue
        indent = _indent(line)
        if literal_indent is not None:
            if indent > literal_indent:
                out.append(line)
                last_text, last_position, blank_before = line, len(out) - 1, False
                continue
            literal_indent = None
        opens_literal = last_text is not None and last_text.rstrip().endswith("::")
        if (blank_before and last_text is not None and indent > _indent(last_text)
                and list_indent is None):
            # an indented block after a paragraph: literal (rule 1)
            if not opens_literal:
                out[last_position] = last_text.rstrip() + " ::"
            literal_indent = _indent(last_text)
            out.append(line)
            last_text, last_position, blank_before = line, len(out) - 1, False
            continue
        if BULLET.match(line):
            if list_indent is None and not blank_before and last_text is not None:
                out.append("")  # rule 2: a list needs a blank line before it
            list_indent = indent
        elif list_indent is not None:
            if indent <= list_indent:
                if not blank_before:
                    out.append("")  # rule 2: and after it
                list_indent = None
        if stripped.startswith(("|", "+")) and stripped.endswith(("|", "+")):
            out.append(line)  # a table row
        else:
            out.append(_escape_bars(line))
        if stripped.endswith("::"):
            literal_indent = indent
        last_text, last_position, blank_before = out[-1], len(out) - 1, False
    return out


def _process(app, what, name, obj, options, lines):
    lines[:] = rewrite(lines)


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    # before napoleon (priority 500): the docstring as written
    app.connect("autodoc-process-docstring", _process, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
