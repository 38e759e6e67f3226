"""The documentation's machinery (docs/_ext): a tutorial whose code fails fails the docs
build, and the docstring preprocessing keeps bornml's plain-text docstrings valid
reStructuredText. The full build (every tutorial executed, warnings as errors) runs in
``.ci/run`` after the tests; these checks are quick and skip without Sphinx."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[1] / "docs" / "_ext"


def _project(tmp_path, page):
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(EXT)!r})
        extensions = ["myst_parser", "bornml_exec"]
        exclude_patterns = ["_build", "_generated"]
    """))
    (src / "index.md").write_text(textwrap.dedent(page))
    return src


def _build(src, out):
    return subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src),
                           str(out)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("block, message", [
    ("```{run} python\nx = 1\nraise RuntimeError('tutorial broke')\n```", "tutorial broke"),
    ("```{run} bash\necho before\nfalse\necho never\n```", "exited with status 1"),
])
def test_failing_tutorial_code_fails_the_build(tmp_path, block, message):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    src = _project(tmp_path, f"# Page\n\n{block}\n\n```{{run}} python\nprint('later')\n```\n")
    proc = _build(src, tmp_path / "out")
    assert proc.returncode != 0
    assert "tutorial code failed in index.md" in proc.stderr
    assert message in proc.stderr
    html = (tmp_path / "out" / "index.html").read_text()
    assert "not run: an earlier block of this page failed" in html  # the rest is skipped


def test_tutorial_blocks_share_a_namespace_and_show_output_and_figures(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    src = _project(tmp_path, """\
        # Page

        ```{run} python
        import matplotlib.pyplot as plt
        value = 6 * 7
        plt.plot([0, 1]); plt.savefig("line.png")
        ```

        ```{run} python
        print("the answer is", value)
        value + 1
        ```

        ```{run} bash
        ls line.png && echo from-bash
        ```
        """)
    proc = _build(src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "out" / "index.html").read_text()
    assert "the answer is 42" in html and "43" in html and "from-bash" in html
    assert (tmp_path / "out" / "_images" / "line.png").exists()


def test_docstring_rewrite():
    sys.path.insert(0, str(EXT))
    try:
        from bornml_docstrings import rewrite
    finally:
        sys.path.remove(str(EXT))
    lines = ["Born charges:", "", "    Z_j = q_j I + |x|", "        + more", "",
             "after |q| and ``|lit|``.", "Searched:", "- one", "  continued", "- two",
             "The end."]
    assert rewrite(lines) == [
        "Born charges: ::", "", "    Z_j = q_j I + |x|", "        + more", "",
        r"after \|q\| and ``|lit|``.", "Searched:", "", "- one", "  continued", "- two", "",
        "The end."]
    # a numpy-style parameter list and a literal block opened by '::' are left alone
    numpy_style = ["Parameters", "----------", "cutoff : float", "    Radius (Å).",
                   "Example::", "", "    a | b"]
    assert rewrite(numpy_style) == numpy_style
