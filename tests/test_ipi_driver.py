"""i-PI end to end: driven dynamics (eda-nve) of a water molecule with Born charges from a bornml
model, through the Python driver (``<bec mode="driver">``) and through a bec.txt written by
bornml (``<bec mode="file">``). Checks i-PI's own outputs against the model: the becx/y/z
trajectories equal the model's Z at the written positions, and i-PI's driven forces equal
Σ_a Z[j,a,b] E_a(t). Skipped without i-PI (``pip install bornml[ipi]``)."""

import shutil
import subprocess

import numpy as np
import pytest
from _structures import SMALL, perturbed_molecule

import bornml
from bornml import keys, units
from bornml.io.ipi import read_ipi_xyz, write_ipi_bec

pytest.importorskip("ipi")
IPI = shutil.which("i-pi")
pytestmark = pytest.mark.skipif(IPI is None, reason="the i-pi command is not installed")

INPUT = """<simulation verbosity='low'>
  <total_steps>8</total_steps>
  <ffdirect name='bornml' pbc='false'>
    <pes>custom</pes>
    <pes_path>{driver}</pes_path>
    <parameters>{{template: start.xyz, model: water.bornml.npz, pbc: false}}</parameters>
  </ffdirect>
  <output prefix='sim'>
    <trajectory filename='pos'>positions</trajectory>
    <trajectory filename='Eforces'>Eforces</trajectory>
    <trajectory filename='becx'>becx</trajectory>
    <trajectory filename='becy'>becy</trajectory>
    <trajectory filename='becz'>becz</trajectory>
    <properties filename='out'>[step, time, Efield]</properties>
  </output>
  <prng><seed>1</seed></prng>
  <system>
    <forces><force forcefield='bornml'/></forces>
    <initialize nbeads='1'>
      <file mode='xyz' units='angstrom'>start.xyz</file>
      <velocities mode='thermal' units='kelvin'>0</velocities>
      <cell mode='manual' units='angstrom'>[20,0,0,0,20,0,0,0,20]</cell>
    </initialize>
    <ensemble><temperature units='kelvin'>0</temperature></ensemble>
    <motion mode='driven_dynamics'>
      <driven_dynamics mode='eda-nve'>
        <timestep units='femtosecond'>0.5</timestep>
        <efield>
          <amp>[0.01, 0.02, -0.015]</amp>
          <freq units='thz'>50</freq>
          <peak units='femtosecond'>2</peak>
          <sigma units='femtosecond'>3</sigma>
        </efield>
        <bec mode='{mode}'>{bec}</bec>
      </driven_dynamics>
    </motion>
  </system>
</simulation>
"""


@pytest.fixture(scope="module")
def water_setup(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(8):
        at = perturbed_molecule("H2O", seed=k, scale=0.08)
        q = np.where(at.numbers == 8, -0.8, 0.4)
        keys.set_bec(at, q[:, None, None] * np.eye(3) + 0.1 * rng.normal(size=(3, 3, 3)))
        frames.append(at)
    model = bornml.MonopoleModel(**SMALL, n_sparse=8, tikhonov=1e-3,
                                 charge_regularisation=0.1).fit(frames)
    folder = tmp_path_factory.mktemp("ipi")
    model.save(folder / "water.bornml.npz")
    start = perturbed_molecule("H2O", seed=11, scale=0.05)
    start.positions += 5.0
    start.write(folder / "start.xyz", format="xyz")
    return model, start, folder


def run_ipi(folder, mode, bec="", files=("water.bornml.npz", "start.xyz")):
    """Run ``i-pi`` in ``folder/mode`` (a few seconds); return the run folder."""
    from bornml import ipi_driver

    run = folder / mode
    run.mkdir()
    for name in files:
        shutil.copy(folder / name, run / name)
    (run / "input.xml").write_text(INPUT.format(driver=ipi_driver.__file__, mode=mode, bec=bec))
    done = subprocess.run([IPI, "input.xml"], cwd=run, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return run


def check_driven_forces(run, bec_at):
    """i-PI's Eforces (a.u.) = Σ_a Z[j,a,b] E_a(t) (E in a.u., Z in e) at every step."""
    props = np.loadtxt(run / "sim.out")
    forces = read_ipi_xyz(run / "sim.Eforces_0.xyz")
    positions = read_ipi_xyz(run / "sim.pos_0.xyz")
    assert len(forces) == 9
    for (_, f, head), (_, pos, _) in zip(forces, positions):
        e = props[props[:, 0] == head["step"], 2:5][0]
        z = bec_at(pos * units.BOHR_ANGSTROM)
        scale = np.abs(f).max()
        assert scale > 1e-4
        assert np.abs(np.einsum("jab,a->jb", z, e) - f).max() < 1e-4 * scale + 1e-9
        assert np.abs(np.einsum("jba,a->jb", z, e) - f).max() > 1e-3 * scale  # transposed


def test_driver_mode_born_charges_from_the_model(water_setup):
    model, start, folder = water_setup
    run = run_ipi(folder, "driver")

    def model_z(positions):
        atoms = start.copy()
        atoms.positions = positions
        return model.predict_frame(atoms)[keys.BEC]

    frames = bornml.read_frames(run / "sim.becx_0.xyz")  # the becx/becy/becz trajectories
    assert len(frames) == 9
    z0 = model.predict_frame(start)[keys.BEC]  # step 0: exact positions, 6 printed digits
    np.testing.assert_allclose(keys.bec_of(frames[0]), z0, rtol=0, atol=5e-6)
    for frame in frames:  # later steps: positions also printed with 6 digits
        frame.pbc = False
        z = model.predict_frame(frame)[keys.BEC]
        np.testing.assert_allclose(keys.bec_of(frame), z, rtol=0, atol=1e-4)
    assert np.abs(frames[-1].positions - start.positions).max() > 1e-6  # the field moved it
    check_driven_forces(run, model_z)


def test_file_mode_reads_the_bec_txt_bornml_writes(water_setup):
    model, start, folder = water_setup
    z = model.predict_frame(start)[keys.BEC]
    write_ipi_bec(folder / "bec.txt", z)
    run = run_ipi(folder, "file", bec=" bec.txt ",
                  files=("water.bornml.npz", "start.xyz", "bec.txt"))
    check_driven_forces(run, lambda positions: z)  # constant Z from the file
