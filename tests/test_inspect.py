"""`bornml inspect`: the layout verdict from the rotational sum rule, and the label checks."""

import json

import numpy as np
import pytest

import bornml
from bornml import keys
from bornml.inspection import inspect_frames, layout_check, rotational_residual


@pytest.fixture(scope="module")
def molecules():
    """Molecules whose Z is the exact derivative of Σ q'_i r_i of a fitted charge model
    (non-symmetric tensors that obey the rotational sum rule)."""
    from _structures import synthetic_molecule_frames

    frames = synthetic_molecule_frames()
    model = bornml.MonopoleModel(cutoff=4.0, max_radial=4, max_angular=3, n_sparse=10,
                                 tikhonov=1e-4, charge_regularisation=0.0).fit(frames)
    out = []
    for f in frames[:4]:
        g = f.copy()
        pred = model.predict_frame(g)
        keys.set_bec(g, pred[keys.BEC])
        g.info["model_dipole"] = pred[keys.CHARGES] @ (g.positions - g.positions.mean(0))
        out.append(g)
    return out


def test_rotational_rule_holds_for_a_model_and_gives_its_dipole(molecules):
    for f in molecules:
        z = keys.bec_of(f)
        assert np.abs(z - z.transpose(0, 2, 1)).max() > 1e-2  # the test can tell
        residual, mu = rotational_residual(z, f.positions)
        swapped, _ = rotational_residual(z.transpose(0, 2, 1), f.positions)
        assert residual < 1e-8
        assert swapped > 1e-3
        np.testing.assert_allclose(mu, f.info["model_dipole"], atol=1e-8)


def test_verdict_on_a_transposed_copy(molecules, tmp_path):
    assert layout_check(molecules)["verdict"].startswith("P-r")
    flipped = []
    for f in molecules:
        g = f.copy()
        keys.set_bec(g, keys.bec_of(f).transpose(0, 2, 1))
        flipped.append(g)
    assert layout_check(flipped)["verdict"].startswith("r-P")
    # the same through the file and the CLI, and train warns
    path = tmp_path / "flipped.extxyz"
    bornml.write_frames(path, flipped)
    from test_cli_inputs import run

    code, out, err = run(["inspect", path, "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["structure"] == "molecule" and report["layout"]["verdict"].startswith("r-P")
    code, _, err = run(["train", path, "-o", tmp_path / "m.npz", "--n-sparse", "5",
                        "--max-radial", "3", "--max-angular", "2", "--tikhonov", "1e-3",
                        "--charge-regularisation", "0", "--test-fraction", "0", "--no-progress"])
    assert code == 0, err
    assert "transposed" in err


def test_crystal_cannot_tell_and_labels_are_checked(quartz_frames):
    report = inspect_frames(quartz_frames[:3])
    assert report["structure"] == "periodic"
    assert report["layout"]["verdict"] == "cannot tell"
    frames = [f.copy() for f in quartz_frames[:2]]
    z = keys.bec_of(frames[0]).copy()
    z[0] += np.eye(3)  # one atom off by 1 e: the sum rule and the total charge show it
    keys.set_bec(frames[0], z)
    report = inspect_frames(frames)
    assert report["total_charge"]["max_abs"] == pytest.approx(
        abs(np.trace(z, axis1=1, axis2=2).sum() / 3), rel=1e-9)
    assert report["asr_residual_per_atom"]["max"] >= 1.0 / len(z) - 1e-3


def test_molecule_in_a_box_counts_as_a_molecule(molecules):
    boxed = molecules[0].copy()
    boxed.cell = np.eye(3) * 20
    boxed.pbc = True
    boxed.center()
    assert inspect_frames([boxed])["structure"] == "molecule"


def test_inspect_says_how_the_format_orientation_is_known(shared_data, tmp_path):
    from test_cli_inputs import run

    castep = next((shared_data / "formats" / "castep").glob("*.castep"))
    code, out, err = run(["inspect", castep])
    assert code == 0, err
    assert "format of" in out and "castep: assumed" in out
    code, out, _ = run(["inspect", castep, "--json"])
    assert "assumed" in json.loads(out)["formats"][str(castep)]


def test_format_and_structure_options(shared_data, tmp_path):
    from test_cli_inputs import run

    qe = shared_data / "formats" / "qe"
    code, out, err = run(["inspect", qe / "AlAs_qe6.0_example02_ph.out", "--structure",
                          qe / "AlAs_qe6.0_example02_pw.out", "--json"])
    assert code == 0, err
    assert json.loads(out)["species"] == {"Al": 1, "As": 1}
    # a wrong --format is an error naming the file, not a traceback
    code, _, err = run(["inspect", qe / "AlAs_qe6.0_example02_ph.out", "--format", "orca-hess"])
    assert code == 2 and "AlAs_qe6.0_example02_ph.out" in err
