"""The command line on the inputs a new user gets wrong: every one is refused before any work
with one ``error:`` line naming the option or file and exit status 2, and nothing the user had
is lost (issue: "nothing lost, nothing accepted that is wrong")."""

import contextlib
import io
import os
import stat
import sys

import numpy as np
import pytest

import bornml
from bornml import keys
from bornml.cli import main
from bornml.demo import shipped_data_path
from bornml.errors import BornDataError

SMALL = ["--n-sparse", "8", "--max-radial", "3", "--max-angular", "2", "--no-progress",
         "--tikhonov", "1e-4", "--index", "0:4"]


def run(argv):
    """(exit status, stdout, stderr) of ``bornml argv`` in-process (SystemExit included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def assert_refused(argv, *words):
    code, _, err = run(argv)
    assert code == 2, err
    assert "Traceback" not in err
    assert "error:" in err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "m.npz"
    code, _, err = run(["train", shipped_data_path(), "-o", path, "--test-fraction", "0",
                        *SMALL])
    assert code == 0, err
    return path


@pytest.mark.parametrize("extra, words", [
    (["--n-sparse", "-5"], ["n_sparse"]),
    (["--n-sparse", "0"], ["n_sparse"]),
    (["--tikhonov", "-1"], ["tikhonov"]),
    (["--test-fraction", "-0.1"], ["--test-fraction"]),
    (["--test-fraction", "1.5"], ["--test-fraction"]),
    (["--cutoff", "-1"], ["cutoff must be positive"]),
    (["--zeta", "0"], ["zeta"]),
    (["--cutoff", "12"], ["--atomic-width", "do not converge"]),
    (["--index", "100:200"], ["--index", "no frames"]),
    (["--model", "p", "--charges", "Hf=4,O=-2"], ["Hf", "charges"]),
    (["--model", "p", "--charges", "Si=4"], ["not for O"]),
])
def test_train_refuses_invalid_values(extra, words, tmp_path):
    out = tmp_path / "m.npz"
    # later flags win in argparse: the bad value comes last
    assert_refused(["train", shipped_data_path(), "-o", out, *SMALL, *extra], *words)
    assert not out.exists()


@pytest.mark.parametrize("parity", ["p.txt", "parity"])
def test_train_checks_the_parity_path_before_fitting(parity, tmp_path):
    out = tmp_path / "m.npz"
    err = assert_refused(["train", shipped_data_path(), "-o", out, "--parity",
                          tmp_path / parity, *SMALL], "--parity", ".png")
    assert "training" not in err  # nothing was read or fitted
    assert not out.exists()


def test_train_checks_the_output_folder_before_fitting(tmp_path):
    assert_refused(["train", shipped_data_path(), "-o", tmp_path / "missing" / "m.npz", *SMALL],
                   "--output", "does not exist")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        assert_refused(["train", shipped_data_path(), "-o", locked / "m.npz", *SMALL],
                       "not writable")


def test_train_on_one_frame_trains_on_it_and_says_so(tmp_path):
    out = tmp_path / "m.npz"
    code, _, err = run(["train", shipped_data_path(), "-o", out, *SMALL, "--index", "0:1"])
    assert code == 0, err
    assert "one frame" in err and out.exists()


def test_predict_refuses_a_non_extxyz_output(model_path, tmp_path):
    assert_refused(["predict", model_path, shipped_data_path(), "-o", tmp_path / "out.traj",
                    "--no-progress"], "--output", ".xyz")


def test_evaluate_refuses_a_bad_parity_path_before_predicting(model_path, tmp_path):
    assert_refused(["evaluate", model_path, shipped_data_path(), "--parity",
                    tmp_path / "p.txt", "--no-progress"], "--parity")


def test_empty_data_file(tmp_path):
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    assert_refused(["train", empty, "-o", tmp_path / "m.npz", *SMALL[:-2]], str(empty))


def test_truncated_model_file(model_path, tmp_path):
    cut = tmp_path / "cut.npz"
    data = model_path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert_refused(["evaluate", cut, shipped_data_path(), "--no-progress"], str(cut))


def test_given_charges_not_neutral_warn_with_the_values_used(tmp_path):
    frames = bornml.read_frames(shipped_data_path(), index="0:3")
    with pytest.warns(UserWarning, match="made neutral"):
        bornml.DipoleModel(n_sparse=5, max_radial=3, max_angular=2, tikhonov=1e-3,
                           charges={"Si": 4, "O": -1.5}).fit(frames)
    with pytest.raises(BornDataError, match="not for O"):
        bornml.DipoleModel(n_sparse=5, max_radial=3, max_angular=2, tikhonov=1e-3,
                           charges={"Si": 4}).fit(frames)


def test_predict_output_respects_the_umask(model_path, tmp_path):
    out = tmp_path / "pred.extxyz"
    old = os.umask(0o022)
    try:
        code, _, err = run(["predict", model_path, shipped_data_path(), "-o", out, "--index",
                            "0:1", "--no-progress"])
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    back = bornml.read_frames(out)
    assert keys.BEC_PREDICTED in back[0].arrays
    assert np.abs(keys.bec_of(back[0])).max() > 0  # the labels are still there


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX permissions", allow_module_level=True)


def test_no_progress_bars_in_non_interactive_logs(tmp_path):
    """stderr redirected to a file (a batch job's log): no tqdm lines, only the messages."""
    argv = [a for a in SMALL if a != "--no-progress"]
    code, _, err = run(["train", shipped_data_path(), "-o", tmp_path / "m.npz", *argv])
    assert code == 0, err
    assert "fit:" not in err and "it/s" not in err


def test_parity_plot_title_names_model_file_and_rmse(tmp_path, monkeypatch):
    import matplotlib.axes

    titles = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: titles.append(text) or original(self, text, *a, **k))
    code, out, err = run(["train", shipped_data_path(), "-o", tmp_path / "m.npz", "--parity",
                          tmp_path / "p.png", "--json", *SMALL, "--index", "0:6"])
    assert code == 0, err
    import json

    rmse = json.loads(out)["test"]["rmse"]
    assert titles == [f"q: 1 held-out frames of quartz_30.extxyz — RMSE {rmse:.4f} e"]
    assert str(tmp_path) not in titles[0]
