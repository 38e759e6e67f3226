"""Tests of the command line (``bornml train | evaluate | predict | demo``), run in-process
through :func:`bornml.cli.main`, plus one real call of the installed console script."""

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import find_mic

import bornml
from bornml import cli, keys
from bornml.cli import main
from bornml.demo import shipped_data_path
from bornml.metrics import bec_errors
from bornml.models.mace_options import MACE_OPTIONS

SMALL_ARGS = ["--n-sparse", "30", "--max-radial", "4", "--max-angular", "3", "--no-progress"]


def run_cli(argv):
    """Run ``bornml argv`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained by ``bornml train`` on the shipped quartz data."""
    folder = tmp_path_factory.mktemp("cli")
    model_path = folder / "quartz.npz"
    code, out, err = run_cli(["train", shipped_data_path(), "-o", model_path, "--json",
                              *SMALL_ARGS])
    return {"code": code, "stdout": out, "stderr": err, "model": model_path, "folder": folder}


@pytest.fixture(scope="module")
def shipped_frames():
    return bornml.read_frames(shipped_data_path())


# -- train / evaluate / predict ----------------------------------------------------------------------

def test_train_writes_model_and_json_summary(trained, shipped_frames):
    assert trained["code"] == 0, trained["stderr"]
    assert trained["model"].is_file()
    summary = json.loads(trained["stdout"])
    for part in ("train", "test"):
        assert 0 < summary[part]["rmse"] < 1.0
        assert 0 < summary[part]["nrmse"] < 0.2
    # default hold-out: 10 % of the 30 frames, evenly spaced, disjoint from the training set
    assert len(summary["test_frames"]) == 3
    assert not set(summary["test_frames"]) & set(summary["train_frames"])
    assert len(summary["train_frames"]) + 3 == len(shipped_frames)
    # the written model reproduces the reported held-out error
    model = bornml.load_model(trained["model"])
    assert model.n_sparse == 30 and model.max_radial == 4 and model.max_angular == 3
    held = [shipped_frames[i] for i in summary["test_frames"]]
    assert bec_errors(held, model.predict(held))["rmse"] == pytest.approx(
        summary["test"]["rmse"], rel=1e-10)


def test_evaluate_json_matches_api(trained, shipped_frames):
    code, out, err = run_cli(["evaluate", trained["model"], shipped_data_path(), "--json",
                              "--no-progress"])
    assert code == 0, err
    result = json.loads(out)
    assert {"rmse", "nrmse"} <= set(result)
    model = bornml.load_model(trained["model"])
    expected = bec_errors(shipped_frames, model.predict(shipped_frames))
    assert result["n_frames"] == len(shipped_frames) == 30
    assert result["rmse"] == pytest.approx(expected["rmse"], rel=1e-12)
    assert result["nrmse"] == pytest.approx(expected["nrmse"], rel=1e-12)
    assert result["nrmse"] == pytest.approx(result["rmse"] / result["std"], rel=1e-12)


def test_evaluate_index_selects_frames(trained, shipped_frames):
    code, out, _ = run_cli(["evaluate", trained["model"], shipped_data_path(), "--json",
                            "--no-progress", "--index", "0:5"])
    assert code == 0
    model = bornml.load_model(trained["model"])
    expected = bec_errors(shipped_frames[:5], model.predict(shipped_frames[:5]))
    result = json.loads(out)
    assert result["n_frames"] == 5
    assert result["rmse"] == pytest.approx(expected["rmse"], rel=1e-12)


def write_unlabelled(path, frames):
    """Structures without Born charges (what a user predicts for)."""
    import ase.io

    ase.io.write(path, [Atoms(f.numbers, positions=f.positions, cell=f.cell, pbc=f.pbc)
                        for f in frames], format="extxyz")
    return path


@pytest.mark.parametrize("source", ["labelled", "unlabelled-cluster"])
def test_predict_writes_charges_and_bec(source, trained, shipped_frames, tmp_path):
    if source == "labelled":
        inp, frames, extra = shipped_data_path(), shipped_frames[:3], ["--index", "0:3"]
    else:
        f = shipped_frames[4]
        d, dist = find_mic(f.positions - f.positions[0], f.cell, pbc=True)
        cluster = Atoms(f.numbers[dist < 4.0], positions=f.positions[0] + d[dist < 4.0])
        frames = [cluster]
        inp, extra = write_unlabelled(tmp_path / "cluster.xyz", frames), []
    out_path = tmp_path / "predicted.extxyz"
    code, _, err = run_cli(["predict", trained["model"], inp, "-o", out_path, "--no-progress",
                            *extra])
    assert code == 0, err
    back = bornml.read_frames(out_path, require_bec=False)
    model = bornml.load_model(trained["model"])
    # compare with the API on the structures as the CLI read them (plain xyz rounds positions)
    frames = bornml.read_frames(inp, index=extra[1] if extra else ":", require_bec=False)
    expected = model.predict(frames)
    assert len(back) == len(frames)
    for frame, got, exp in zip(frames, back, expected):
        np.testing.assert_allclose(got.positions, frame.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got.arrays[keys.BEC_PREDICTED].reshape(-1, 3, 3),
                                   exp["bec"], rtol=0, atol=1e-8)
        np.testing.assert_allclose(got.arrays[keys.CHARGES_PREDICTED], exp["charges"], rtol=0,
                                   atol=1e-8)
    if source == "labelled":  # the DFT labels are kept, next to the predictions
        for got, frame in zip(back, shipped_frames[:3]):
            np.testing.assert_array_equal(keys.bec_of(got), keys.bec_of(frame))
        # and evaluate on the written file compares the labels with the model, not with itself
        code, stdout, err = run_cli(["evaluate", trained["model"], out_path, "--json",
                                     "--no-progress"])
        assert code == 0, err
        assert json.loads(stdout)["rmse"] == pytest.approx(
            bec_errors(shipped_frames[:3], expected)["rmse"], rel=1e-10)
        assert json.loads(stdout)["rmse"] > 1e-3
    else:
        assert keys.BEC not in back[0].arrays


# -- bad inputs: exit code 2 and a message naming the file ---------------------------------------

def test_train_missing_file(tmp_path):
    missing = tmp_path / "no-such-data.extxyz"
    code, _, err = run_cli(["train", missing, "-o", tmp_path / "m.npz", *SMALL_ARGS])
    assert code == 2
    assert str(missing) in err
    assert not (tmp_path / "m.npz").exists()


def test_train_file_without_bec(tmp_path, shipped_frames):
    path = write_unlabelled(tmp_path / "structures-only.extxyz", shipped_frames[:3])
    code, _, err = run_cli(["train", path, "-o", tmp_path / "m.npz", *SMALL_ARGS])
    assert code == 2
    assert str(path) in err
    assert "error" in err.lower()
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_corrupt_model_file(command, tmp_path):
    bad = tmp_path / "corrupt-model.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a complete zip archive")
    argv = [command, bad, shipped_data_path(), "--no-progress"]
    if command == "predict":
        argv += ["-o", tmp_path / "out.extxyz"]
    code, out, err = run_cli(argv)
    assert code == 2
    assert str(bad) in err
    assert out == ""
    assert not (tmp_path / "out.extxyz").exists()


def test_missing_model_file(tmp_path):
    missing = tmp_path / "missing-model.npz"
    code, _, err = run_cli(["evaluate", missing, shipped_data_path(), "--no-progress"])
    assert code == 2
    assert str(missing) in err


def test_evaluate_data_without_bec(trained, tmp_path, shipped_frames):
    path = write_unlabelled(tmp_path / "unlabelled.extxyz", shipped_frames[:2])
    code, _, err = run_cli(["evaluate", trained["model"], path, "--no-progress"])
    assert code == 2
    assert str(path) in err


# -- console script and demo -----------------------------------------------------------------------

def test_console_script_help():
    exe = shutil.which("bornml")
    if exe is None:
        pytest.skip("the bornml console script is not installed on PATH")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "predict", "demo"):
        assert command in result.stdout
    # the module entry point agrees
    result = subprocess.run([sys.executable, "-m", "bornml.cli", "--version"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and bornml.__version__ in result.stdout


def test_demo_quick(tmp_path):
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(["demo", "--quick", "--output-dir", out_dir])
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    # measured: held-out nRMSE 0.035 (3 frames, quick model)
    assert summary["held_out"]["nrmse"] < 0.1
    assert summary["held_out"]["n_frames"] == 3
    for name in ("parity.png", "ir_spectrum.png"):
        data = (out_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    csv = (out_dir / "ir_spectrum.csv").read_text().splitlines()
    assert len(csv) > 10
    model = bornml.load_model(out_dir / "quartz_monopole.npz")
    assert model.species_ == (8, 14)
    assert json.loads(out.strip().splitlines()[-1]) == summary


@pytest.mark.parametrize("kind", ["q", "q+p"])
def test_ir_with_model_equals_ir_with_predicted_bec_in_file(kind, trained, shipped_frames,
                                                            tmp_path):
    """`bornml ir --model` (adjoint Ṁ, Z never assembled) gives the same spectrum as
    `--bec-from-file` on the same frames carrying the model's Born charges — for the monopole
    and for the combined (charges + dipoles) model."""
    from bornml.demo import spring_network_trajectory
    from bornml.io import write_frames
    from bornml.spectra.ir import IRSpectrum

    model_path = trained["model"]
    if kind == "q+p":
        model_path = tmp_path / "qp.npz"
        bornml.CombinedModel(cutoff=5.0, max_radial=4, max_angular=3, n_sparse=30).fit(
            shipped_frames[:4]).save(model_path)
    model = bornml.load_model(model_path)
    traj = spring_network_trajectory(shipped_frames[0], n_steps=240, save_every=4)
    with_bec = []
    for frame in traj:
        frame = frame.copy()
        frame.arrays["bec"] = model.predict_frame(frame)["bec"]
        with_bec.append(frame)
    plain_path, bec_path = tmp_path / "traj.extxyz", tmp_path / "traj_bec.extxyz"
    write_frames(plain_path, [f.copy() for f in traj])
    write_frames(bec_path, with_bec)
    common = ["--temperature", "300", "--max-lag", "50", "--no-progress"]
    code, _, err = run_cli(["ir", plain_path, "--model", model_path,
                            "-o", tmp_path / "model.csv", *common])
    assert code == 0, err
    code, _, err = run_cli(["ir", bec_path, "--bec-from-file", "-o", tmp_path / "file.csv",
                            *common])
    assert code == 0, err
    a = IRSpectrum.read_csv(tmp_path / "model.csv")
    b = IRSpectrum.read_csv(tmp_path / "file.csv")
    assert np.abs(a.n_alpha_cm1).max() > 0
    np.testing.assert_allclose(a.n_alpha_cm1, b.n_alpha_cm1, rtol=1e-7,
                               atol=1e-9 * np.abs(b.n_alpha_cm1).max())


def test_outputs_never_replace_inputs(trained, tmp_path, shipped_frames):
    """predict / train / ir refuse an --output that is one of their input files."""
    data = tmp_path / "data.extxyz"
    shutil.copy(shipped_data_path(), data)
    before = data.read_bytes()
    for argv in (["predict", trained["model"], data, "-o", data, "--no-progress"],
                 ["train", data, "-o", data, *SMALL_ARGS],
                 ["ir", data, "--bec-from-file", "--timestep", "1", "-o", data]):
        code, _, err = run_cli(argv)
        assert code == 2, argv
        assert "output" in err and str(data) in err
    assert data.read_bytes() == before


def test_partition_writes_charges_and_table(trained, shipped_frames, tmp_path):
    """`bornml partition` writes the model's charges and a per-species table that matches
    statistics computed here from the API predictions."""
    out = tmp_path / "partition.extxyz"
    code, stdout, err = run_cli(["partition", trained["model"], shipped_data_path(),
                                 "--index", "0:4", "-o", out, "--json", "--no-progress"])
    assert code == 0, err
    model = bornml.load_model(trained["model"])
    expected = [model.predict_frame(f)["charges"] for f in shipped_frames[:4]]
    back = bornml.read_frames(out)
    for frame, q in zip(back, expected):
        np.testing.assert_allclose(frame.arrays[keys.CHARGES_PREDICTED], q, rtol=0, atol=1e-10)
    table = json.loads(stdout)
    numbers = np.concatenate([f.numbers for f in shipped_frames[:4]])
    q_all = np.concatenate(expected)
    for symbol, z in (("Si", 14), ("O", 8)):
        assert table[symbol]["n_atoms"] == int((numbers == z).sum())
        assert abs(table[symbol]["mean_q"] - q_all[numbers == z].mean()) < 1e-12
        assert abs(table[symbol]["max_abs_q"] - np.abs(q_all[numbers == z]).max()) < 1e-12
    assert table["Si"]["mean_q"] > 0 > table["O"]["mean_q"]  # charges are signed sensibly
    # the neutral charges sum to zero in every frame
    assert abs(sum(table[s]["mean_q"] * table[s]["n_atoms"] for s in table)) < 1e-9


@pytest.mark.parametrize("kind", ["p", "q+p"])
def test_train_and_partition_dipole_models(kind, shipped_frames, tmp_path):
    """`bornml train --model p|q+p` writes a model of that type whose held-out error matches
    the API, and `bornml partition` writes its charges and dipoles and reports max |p|."""
    model_path = tmp_path / "m.npz"
    extra = ["--charges", "Si=3.2,O=-1.6"] if kind == "p" else ["--charge-regularisation", "0.1"]
    code, out, err = run_cli(["train", shipped_data_path(), "--model", kind, "-o", model_path,
                              "--json", "--index", "0:12", *extra, *SMALL_ARGS])
    assert code == 0, err
    model = bornml.load_model(model_path)
    assert model.model_type == kind
    summary = json.loads(out)
    held = [shipped_frames[i] for i in summary["test_frames"]]
    assert bec_errors(held, model.predict(held))["rmse"] == pytest.approx(
        summary["test"]["rmse"], rel=1e-10)
    assert summary["test"]["nrmse"] < 0.1
    if kind == "p":
        assert model.fixed_charges_[14] == 3.2
    parted = tmp_path / "parted.extxyz"
    code, stdout, err = run_cli(["partition", model_path, shipped_data_path(), "--index", "20:22",
                                 "-o", parted, "--json", "--no-progress"])
    assert code == 0, err
    back = bornml.read_frames(parted)
    table = json.loads(stdout)
    dipoles = []
    for frame, source in zip(back, shipped_frames[20:22]):
        pred = model.predict_frame(source)
        np.testing.assert_allclose(frame.arrays[keys.DIPOLES_PREDICTED], pred["dipoles"], rtol=0,
                                   atol=1e-10)
        np.testing.assert_allclose(frame.arrays[keys.CHARGES_PREDICTED], pred["charges"], rtol=0,
                                   atol=1e-10)
        np.testing.assert_array_equal(keys.bec_of(frame), keys.bec_of(source))  # labels kept
        dipoles.append(pred["dipoles"][source.numbers == 14])
    p_si = np.linalg.norm(np.concatenate(dipoles), axis=1).max()
    assert abs(table["Si"]["max_abs_p"] - p_si) < 1e-12 and p_si > 0


def test_cli_parser_does_not_import_torch():
    """Kernel-model users never pay for torch: building the parser (every command, --help)
    imports neither torch nor mace."""
    code = ("import sys, bornml.cli; bornml.cli.build_parser(); "
            "print(int('torch' in sys.modules), int('mace' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0"]


# -- flags that do not apply, and values that cannot work, are refused before any work -------------

def _usage_failure(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("model, flags, named", [
    ("p", ["--zeta", "3"], "--zeta"),
    ("p", ["--charge-regularisation", "0.1"], "--charge-regularisation"),
    ("p", ["--regulariser", "identity"], "--regulariser"),
    ("q", ["--charges", "Si=4,O=-2"], "--charges"),
    ("q", ["--dipole-tikhonov", "1e-5"], "--dipole-tikhonov"),
    ("q+p", ["--charges", "Si=4,O=-2"], "--charges"),
    ("mace-q", ["--cutoff", "4"], "--cutoff"),
    ("mace-q", ["--n-sparse", "10"], "--n-sparse"),
    ("mace-p", ["--tikhonov", "1e-5"], "--tikhonov"),
    ("q", ["--r-max", "4"], "--r-max"),
    ("q+p", ["--max-epochs", "3"], "--max-epochs"),
])
def test_flags_that_do_not_apply_are_refused(model, flags, named, tmp_path, capsys):
    out = tmp_path / "m.npz"
    code, err = _usage_failure(["train", shipped_data_path(), "-o", out, "--model", model,
                                *flags], capsys)
    assert code == 2 and named in err and model in err
    assert not out.exists()


@pytest.mark.parametrize("flags, named", [
    (["--n-sparse", "0"], "n_sparse"), (["--n-sparse", "-5"], "n_sparse"),
    (["--tikhonov", "-1"], "tikhonov"), (["--cutoff", "-1"], "cutoff"),
    (["--zeta", "0"], "zeta"), (["--max-memory", "lots"], "max_memory"),
    (["--cv-folds", "1"], "cv_folds"),
])
def test_values_that_cannot_work_are_refused(flags, named, tmp_path, capsys):
    code, err = _usage_failure(["train", shipped_data_path(), "-o", tmp_path / "m.npz",
                                *flags], capsys)
    assert code == 2 and named in err


def test_train_reports_the_cross_validated_choice(trained):
    summary = json.loads(trained["stdout"])
    assert set(summary["regularisation"]) == {"tikhonov", "charge_regularisation"}
    assert "cross-validation" in trained["stderr"]


# -- every model flag is checked against --model, whatever its value ------------------------------

#: a valid value for the flags whose default is None (the others are given their default)
_SAMPLE = {"tikhonov": "1e-5", "dipole_tikhonov": "1e-5", "charge_regularisation": "0.1",
           "charges": "Si=4,O=-2", "max_memory": "8GB", "max_time": "60", "device": "cpu",
           "sum_rule_weight": "1"}


def _given(dest, option):
    """The command-line words that give flag ``dest`` explicitly (its default where it has one)."""
    if option.argparse and option.argparse.get("action") == "store_true":
        return [option.flag]
    value = _SAMPLE[dest] if option.default is None else option.default
    return [option.flag, str(value)]


_REFUSED = [(model, dest) for dest, option in cli.TRAIN_OPTIONS.items()
            for model in cli.MODEL_TYPES if model not in option.models]
_REFUSED += [(model, dest) for dest in MACE_OPTIONS for model in cli.KERNEL]


@pytest.mark.parametrize("model, dest", _REFUSED)
def test_every_flag_is_refused_for_models_it_does_not_apply_to(model, dest, tmp_path, capsys):
    """Given explicitly — even with its default value — a flag that the chosen --model would
    ignore stops `train` with exit 2 before any data is read (the data file does not exist)."""
    option = cli.TRAIN_OPTIONS.get(dest) or MACE_OPTIONS[dest]
    code, err = _usage_failure(["train", tmp_path / "missing.extxyz", "-o", tmp_path / "m.npz",
                                "--model", model, *_given(dest, option)], capsys)
    assert code == 2
    assert f"{option.flag} does not apply to --model {model}:" in err, err
    assert "applies only to --model" in err


@pytest.mark.parametrize("model, flags, reason", [
    ("p", ["--zeta", "2"], "--dipole-zeta"),
    ("q", ["--dipole-zeta", "2"], "q learns no dipoles"),
    ("mace-p", ["--dipole-zeta", "2"], "kernel-model setting"),
    ("mace-q", ["--cutoff", "5"], "--r-max"),
    ("mace-q+p", ["--zeta", "2"], "kernel-model setting"),
    ("q", ["--r-max", "5"], "--cutoff"),
    ("q+p", ["--float32"], "MACE setting"),
    ("mace-p", ["--charge-regularisation", "0"], "fixed"),
    ("q", ["--charges", "Si=4,O=-2"], "learn their charges"),
    ("p", ["--dipole-tikhonov", "1e-5"], "--tikhonov"),
])
def test_refusals_say_why(model, flags, reason, tmp_path, capsys):
    code, err = _usage_failure(["train", tmp_path / "missing.extxyz", "-o", tmp_path / "m.npz",
                                "--model", model, *flags], capsys)
    assert code == 2 and reason in err, err


@pytest.mark.parametrize("model", cli.KERNEL)
def test_left_out_flags_get_the_constructor_defaults(model):
    """The parser defaults are None (to tell given from left out); the real defaults are
    filled in afterwards and equal the constructors' — explicit defaults change nothing."""
    classes = {"q": bornml.MonopoleModel, "p": bornml.DipoleModel, "q+p": bornml.CombinedModel}
    parser = cli.build_parser()
    built = cli._build_model(parser.parse_args(["train", "x", "-o", "m.npz", "--model", model]))
    expected = classes[model](seed=0, progress=True).get_params()
    assert built.get_params() == expected
    explicit = [word for dest, option in cli.TRAIN_OPTIONS.items()
                if model in option.models and option.default is not None
                for word in _given(dest, option)]
    again = cli._build_model(parser.parse_args(["train", "x", "-o", "m.npz", "--model", model,
                                                *explicit]))
    assert again.get_params() == expected


def test_registry_entries_are_constructor_settings_and_help_states_defaults():
    """One line in TRAIN_OPTIONS is all a new kernel setting needs: its dest is a constructor
    parameter of every kernel model it applies to, and --help shows its default."""
    classes = {"q": bornml.MonopoleModel, "p": bornml.DipoleModel, "q+p": bornml.CombinedModel}
    for dest, option in cli.TRAIN_OPTIONS.items():
        for model in set(option.models) & set(cli.KERNEL):
            assert dest in classes[model]._get_param_names(), (dest, model)
        assert option.default is None or _states_default(option.help, option.default), dest
    for dest, option in MACE_OPTIONS.items():
        assert option.default in (None, False) or _states_default(option.help, option.default)


def _states_default(text, default):
    """Whether a help text names ``default`` in parentheses, "(5.0)", or as "'x', default"."""
    if f"'{default}', default" in text:
        return True
    for token in re.findall(r"\(([^()]+)\)", text):
        try:
            if type(default)(token.strip()) == default:
                return True
        except ValueError:
            pass
    return False


def test_mace_settings_from_the_command_line():
    """--r-max (not --cutoff) is the MACE cutoff; left-out MACE flags get their defaults."""
    pytest.importorskip("mace")
    parser = cli.build_parser()
    model = cli._build_model(parser.parse_args(["train", "x", "-o", "m.npz", "--model",
                                                "mace-q", "--r-max", "4.5"]))
    assert (model.r_max, model.max_epochs, model.dtype, model.charge_regularisation) == (
        4.5, 200, "float64", 0.0)
    model = cli._build_model(parser.parse_args(["train", "x", "-o", "m.npz", "--model",
                                                "mace-q+p", "--charge-regularisation", "0.2",
                                                "--float32"]))
    assert (model.r_max, model.dtype, model.charge_regularisation) == (5.0, "float32", 0.2)
