"""Sphinx extension: tables generated from the package, so the docs cannot drift from it.

``{bornml-keys}``: every constant of :mod:`bornml.keys` with its value and its ``#:`` comment,
one table per ``# -- section --`` of the module, in source order.
"""

import ast
import inspect
import re

from docutils import nodes
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

SECTION = re.compile(r"^# -- (.*?)\s*-*\s*$")


def _inline(text, node):
    """Append ``text`` to ``node``, with ````literal```` spans as literal nodes."""
    for k, part in enumerate(re.split(r"``(.*?)``", text)):
        if part:
            node += nodes.literal(part, part) if k % 2 else nodes.Text(part)
    return node


def _literal(text):
    para = nodes.paragraph()
    para += nodes.literal(text, text)
    return para


def _table(rows, widths):
    table = nodes.table(classes=["bornml-keys"])
    group = nodes.tgroup(cols=len(widths))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for i, row in enumerate(rows):
        tr = nodes.row()
        for cell in row:
            entry = nodes.entry()
            entry += cell if isinstance(cell, nodes.Node) else _inline(cell, nodes.paragraph())
            tr += entry
        (head if i == 0 else body).append(tr)
    return table


class KeysDirective(SphinxDirective):
    """The key registry of :mod:`bornml.keys` as tables."""

    def run(self):
        import bornml.keys as module

        source = inspect.getsource(module)
        docs = ModuleAnalyzer.for_module(module.__name__).find_attr_docs()
        sections = {}  # line → title
        for lineno, line in enumerate(source.splitlines(), start=1):
            match = SECTION.match(line)
            if match:
                sections[lineno] = match.group(1)
        assigns = [(node.lineno, node.targets[0].id) for node in ast.parse(source).body
                   if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)]
        out = []
        title, rows = None, []

        def flush():
            if len(rows) > 1:
                if title:
                    out.append(_inline(title[0].upper() + title[1:], nodes.rubric()))
                out.append(_table(list(rows), [22, 30, 48]))

        rows = [["constant", "value", "meaning"]]
        for lineno, name in assigns:
            starts = [line for line in sections if line < lineno]
            current = sections[max(starts)] if starts else None
            if current != title:
                flush()
                title, rows = current, [["constant", "value", "meaning"]]
            meaning = " ".join(docs.get(("", name), [])).strip()
            value = repr(getattr(module, name))
            rows.append([_literal(f"keys.{name}"), _literal(value), meaning])
        flush()
        return out


def setup(app):
    app.add_directive("bornml-keys", KeysDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


class CliDirective(SphinxDirective):
    """``{bornml-cli}``: every subcommand of ``bornml.cli.build_parser()`` — usage,
    description and options — as sections. Help texts are shown as plain text (never parsed
    as markup), with argparse's own ``%(default)s`` expansion."""

    def run(self):
        import argparse
        import os

        from bornml.cli import build_parser

        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "90"  # argparse wraps usage lines to the terminal width
        try:
            parser = build_parser()
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            helps = {a.dest: a.help for a in sub._choices_actions}
            out = [self._usage(parser), nodes.paragraph(text=parser.description or "")]
            for name, subparser in sub.choices.items():
                out.append(self._command(name, subparser, helps.get(name)))
        finally:
            if old is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = old
        return out

    @staticmethod
    def _usage(parser):
        text = parser.format_usage().strip()
        text = text[len("usage: "):] if text.startswith("usage: ") else text
        return nodes.literal_block(text, text, language="text")

    def _command(self, name, parser, summary):
        import argparse

        section_id = f"bornml-{name}"
        section = nodes.section(ids=[section_id], names=[section_id])
        section += nodes.title(text=f"bornml {name}")
        if summary:
            section += nodes.paragraph(text=summary[0].upper() + summary[1:] + ".")
        section += self._usage(parser)
        if parser.description:
            section += nodes.paragraph(text=parser.description)
        formatter = parser._get_formatter()
        for group in parser._action_groups:
            actions = [a for a in group._group_actions
                       if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
            if not actions:
                continue
            title = {"options": "options", "optional arguments": "options"}.get(
                group.title, group.title)
            section += nodes.rubric(text=title[0].upper() + title[1:])
            dl = nodes.definition_list()
            for action in actions:
                item = nodes.definition_list_item()
                term = nodes.term()
                invocation = formatter._format_action_invocation(action)
                term += nodes.literal(invocation, invocation)
                if action.required and action.option_strings:
                    term += nodes.Text(" (required)")
                item += term
                definition = nodes.definition()
                definition += nodes.paragraph(text=formatter._expand_help(action)
                                              if action.help else "")
                item += definition
                dl += item
            section += dl
        return section


def _setup_cli(app):
    app.add_directive("bornml-cli", CliDirective)


_setup_keys = setup


def setup(app):  # noqa: F811 - one setup for both directives
    _setup_cli(app)
    return _setup_keys(app)
