"""`bornml ir --model` with a kernel model: the uncertainty score of every N-th sample next to Ṁ
in a side file, and the refusals of --score-every where it cannot apply."""

import csv

import numpy as np
from test_cli_inputs import run

import bornml
from bornml.demo import shipped_data_path, spring_network_trajectory


def test_ir_writes_scores_next_to_mdot(tmp_path):
    frames = bornml.read_frames(shipped_data_path(), index="0:6")
    model = bornml.MonopoleModel(cutoff=4.0, max_radial=3, max_angular=2, n_sparse=10,
                                 tikhonov=1e-3, charge_regularisation=0.0).fit(frames)
    model.save(tmp_path / "m.npz")
    bornml.write_frames(tmp_path / "traj.extxyz", spring_network_trajectory(frames[0], 80))
    out = tmp_path / "ir.csv"
    code, _, err = run(["ir", tmp_path / "traj.extxyz", "--model", tmp_path / "m.npz", "-o", out,
                        "--score-every", "5", "--no-progress"])
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "ir_uncertainty.csv")))
    assert len(rows) == 20  # one per Ṁ sample (80 steps saved every 4)
    scored = [r for r in rows if r["uncertainty_score_e"]]
    assert [int(r["sample"]) for r in scored] == [0, 5, 10, 15]
    assert all(float(r["uncertainty_score_e"]) > 0 for r in scored)
    # Ṁ in the side file is the model's Σ_j Z_j v_j of that frame
    first = bornml.read_frames(tmp_path / "traj.extxyz", index="0", require_bec=False)[0]
    expected = model.dipole_derivative(first, first.arrays["velocities"])
    got = [float(rows[0][f"mdot_{a}_eA_per_fs"]) for a in "xyz"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_score_every_needs_a_model(tmp_path):
    frames = bornml.read_frames(shipped_data_path(), index="0:1")
    bornml.write_frames(tmp_path / "traj.extxyz", spring_network_trajectory(frames[0], 40))
    code, _, err = run(["ir", tmp_path / "traj.extxyz", "--bec-from-file", "-o",
                        tmp_path / "ir.csv", "--score-every", "5", "--no-progress"])
    assert code == 2 and "--score-every" in err
