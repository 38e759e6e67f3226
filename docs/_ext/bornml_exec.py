"""Sphinx extension: the code of the tutorials runs during the docs build.

In a MyST page::

    ```{run} python
    import bornml
    frames = bornml.read_frames(bornml.demo.shipped_data_path())
    len(frames)
    ```

    ```{run} bash
    bornml inspect quartz.extxyz
    ```

* The blocks of one page run in order, in one Python namespace and one working folder,
  ``docs/_generated/<page>/`` (emptied when the page is read), so a later block sees the files
  and variables of earlier ones. ``bash`` blocks run with ``bash -euo pipefail`` and the
  ``bornml`` of the Python that builds the docs.
* The page shows the code, then what it printed (stdout and stderr; for Python, also the value
  of a last bare expression, as in a notebook), then every ``.png`` the block wrote.
* A block that raises (or a bash block that exits non-zero) is an error at the page and line;
  the rest of that page is not run, and the build stops with an error at the end
  (``build-finished``) even without ``-W``. Pages with ``run`` blocks are re-read on every
  build, so a cached page never hides a failure.

Options: ``:hide-output:`` (run, show the code only), ``:hide-code:`` (show the output only),
``:max-lines: N`` (keep the first N output lines, default 60), ``:timeout: S`` (bash only,
default 600 s).
"""

import ast
import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

GENERATED = "_generated"  #: folder under the source dir where the pages run
_STATE = {}  #: docname → {"ns": dict, "failed": bool, "seconds": float}
_FAILURES = []  #: (docname, line, message) of this build
_TIMES = {}  #: docname → seconds spent running its blocks in this build


def _workdir(srcdir, docname):
    return Path(srcdir) / GENERATED / docname


def _run_python(code, namespace, filename, buffer):
    """Run ``code``, printing into ``buffer`` (and the repr of a last bare expression)."""
    tree = ast.parse(code, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            exec(compile(tree, filename, "exec"), namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), namespace)
                if value is not None:
                    print(repr(value))
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")


def _run_bash(code, cwd, timeout):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout


def _clip(text, max_lines):
    lines = text.rstrip("\n").splitlines()
    if len(lines) > max_lines:
        cut = len(lines) - max_lines
        lines = lines[:max_lines] + [f"... ({cut} more lines)"]
    return "\n".join(lines)


class RunDirective(SphinxDirective):
    """``{run} python`` / ``{run} bash``: show the code, run it, show its output and figures."""

    required_arguments = 1
    has_content = True
    option_spec = {"hide-output": directives.flag, "hide-code": directives.flag,
                   "max-lines": directives.positive_int, "timeout": directives.positive_int}

    def run(self):
        language = self.arguments[0]
        if language not in ("python", "bash"):
            raise self.error(f"run: language must be python or bash, not {language!r}")
        docname = self.env.docname
        self.env.bornml_run_docs = getattr(self.env, "bornml_run_docs", set()) | {docname}
        state = _STATE.setdefault(docname, _new_state(self.env.srcdir, docname))
        code = "\n".join(self.content)
        out = []
        if "hide-code" not in self.options:
            block = nodes.literal_block(code, code, language=language)
            out.append(block)
        if state["failed"]:
            out.append(nodes.paragraph(text="(not run: an earlier block of this page failed)"))
            return out
        workdir = _workdir(self.env.srcdir, docname)
        before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*.png")}
        cwd = os.getcwd()
        start = time.perf_counter()
        error = None
        text = ""
        try:
            os.chdir(workdir)
            if language == "python":
                buffer = io.StringIO()
                try:
                    _run_python(code, state["ns"], f"{docname}.md:{self.lineno}", buffer)
                finally:
                    text = buffer.getvalue()
            else:
                rc, text = _run_bash(code, workdir, self.options.get("timeout", 600))
                if rc:
                    error = f"bash block exited with status {rc}:\n{text}"
        except Exception:  # noqa: BLE001 - any failure of the tutorial's code is reported
            error = text + traceback.format_exc()
            text = error
        finally:
            os.chdir(cwd)
            _TIMES[docname] = _TIMES.get(docname, 0.0) + time.perf_counter() - start
        if error is not None:
            state["failed"] = True
            _FAILURES.append((docname, self.lineno, error))
            logger.error("tutorial code failed:\n%s", error, location=(docname, self.lineno))
        if text.strip() and ("hide-output" not in self.options or error is not None):
            clipped = _clip(text, self.options.get("max-lines", 60))
            block = nodes.literal_block(clipped, clipped, language="text")
            block["classes"].append("run-output")
            out.append(block)
        if error is None:
            for png in sorted(workdir.rglob("*.png")):
                if before.get(png) != png.stat().st_mtime_ns:
                    uri = "/" + png.relative_to(self.env.srcdir).as_posix()
                    out.append(nodes.image(uri=uri, alt=png.name, width="85%"))
        return out


def _new_state(srcdir, docname):
    return {"ns": {"__name__": "__tutorial__"}, "failed": False}


def _source_read(app, docname, source):
    """A page is (re)read: fresh namespace, empty working folder."""
    _STATE.pop(docname, None)
    workdir = _workdir(app.srcdir, docname)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)


def _outdated(app, env, added, changed, removed):
    """Pages with run blocks are always re-read (their output depends on the package)."""
    return sorted(getattr(env, "bornml_run_docs", set()) - set(added) - set(changed)
                  - set(removed))


def _purge(app, env, docname):
    if hasattr(env, "bornml_run_docs"):
        env.bornml_run_docs.discard(docname)


def _reset(app):
    """A new build: no failures or timings of an earlier one (same process)."""
    _STATE.clear()
    _FAILURES.clear()
    _TIMES.clear()


def _finished(app, exception):
    if exception is not None:
        return
    for docname, seconds in sorted(_TIMES.items()):
        logger.info("run blocks of %s: %.1f s", docname, seconds)
    if _FAILURES:
        where = ", ".join(f"{doc}.md:{line}" for doc, line, _ in _FAILURES)
        raise ExtensionError(f"tutorial code failed in {where} (tracebacks above)")


def setup(app):
    import matplotlib

    matplotlib.use("Agg")
    os.environ.setdefault("MPLBACKEND", "Agg")
    app.add_directive("run", RunDirective)
    app.connect("builder-inited", _reset)
    app.connect("source-read", _source_read)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("build-finished", _finished)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True,
            "env_version": 1}
