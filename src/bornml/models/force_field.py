"""A kernel force field on the Born-charge machinery: the same SOAP descriptor, the same shared
reference environments (:class:`~bornml.models.reference_set.ReferenceSet`), the same scalar
kernel as the charges, with site energies in place of charges.

    E = Σ_s n_s ε_s + Σ_i Σ_{k ∈ refs(s_i)} w_k (x̂_i · x̂_k)^ζ        (eV)

Forces (and the stress of a periodic cell) by the adjoint route (:mod:`bornml.models.energy_term`).
Fit: offsets ε_s by least squares of the energies on the species counts (minimum norm when the
compositions do not tell them apart), then w by linear least squares on energies (eV/atom),
forces (eV/Å) and optionally stresses, each with its own weight
(:class:`~bornml.models.force_equations.ForceFieldEquations`).
"""

import numpy as np
from tqdm.auto import tqdm

from .. import keys
from ..errors import BornDataError
from ..memory import FLOAT, check_memory
from .core_repulsion import core_energy_and_pair_gradients, shortest_distances
from .descriptor_settings import (
    check_descriptor_settings,
    check_radial_basis,
    soap_settings,
)
from .energy_term import EnergyTerm, forces_and_virial
from .force_equations import ForceFieldEquations
from .params import ParamsMixin
from .reference_set import ReferenceSet
from .scalar_kernel import REGULARISERS
from .training_data import predict_frames, source_of


def _volume(frame):
    return abs(float(np.linalg.det(frame.cell[:]))) if frame.pbc.all() else 0.0


class ForceFieldModel(ParamsMixin):
    """Kernel force field (sparse GAP-like regression on the bornml SOAP descriptor).

    Parameters
    ----------
    cutoff, max_radial, max_angular, atomic_width, cutoff_width
        SOAP settings as in :class:`~bornml.models.monopole.MonopoleModel` (Å).
    zeta : int
        Kernel exponent ζ.
    n_sparse, sparse_method, max_pool, seed, species_channels, max_memory, progress
        As in the Born-charge models.
    tikhonov : float
        ω, relative to tr(AᵀA)/M of the weighted rows (dimensionless).
    regulariser : {"kernel", "identity"}
        ω·wᵀK_MM·w (Gaussian-process prior) or ω·|w|².
    energy_weight : float
        Weight of the per-atom energy error (each frame counted N times); 0 = forces only.
    force_weight : float
        Weight of the force-component error (eV/Å).
    stress_weight : float
        Weight of the per-atom virial error V·Δσ/N (eV), from ``info["stress"]`` in ASE's sign
        (σ = (1/V) ∂E/∂ε, eV/Å³); 0 (default) = stresses not used.
    core_margin : float
        Repulsive wall below ``core_margin`` × the shortest training distance of each species
        pair (:mod:`bornml.models.core_repulsion`; zero on the training data); 0 = no wall.
    core_stiffness : float
        k of the wall ½k(r0 − r)³ per directed pair, eV/Å³.
    """

    model_type = "ff"

    def __init__(self, cutoff=5.0, max_radial=7, max_angular=6, atomic_width=0.3,
                 cutoff_width=0.5, zeta=2, n_sparse=500, sparse_method="fps", tikhonov=1e-6,
                 regulariser="kernel", energy_weight=1.0, force_weight=1.0, stress_weight=0.0,
                 core_margin=0.9, core_stiffness=100.0, max_pool=20000, seed=0,
                 species_channels="auto", max_memory=None, progress=False):
        self._store_params(locals())

    @property
    def soap_settings(self):
        return soap_settings(self)

    def _check_settings(self):
        """ValueError naming the setting for values that cannot work."""
        check_descriptor_settings(self)
        for name in ("tikhonov", "energy_weight", "force_weight", "stress_weight",
                     "core_margin", "core_stiffness"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if not (self.energy_weight or self.force_weight or self.stress_weight):
            raise ValueError("energy_weight, force_weight and stress_weight are all 0")
        if self.regulariser not in REGULARISERS:
            raise ValueError(f"regulariser must be one of {REGULARISERS}")
        EnergyTerm(self.zeta, self.regulariser)  # checks ζ
        check_radial_basis(self)

    def _check_memory(self, n_bytes, what, hint):
        return check_memory(n_bytes, what, hint, self.max_memory)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, frames):
        """Fit to ``info["energy"]`` (eV), ``arrays["forces"]`` (N, 3) eV/Å and, with
        ``stress_weight`` > 0, ``info["stress"]`` (eV/Å³) of ``frames`` (each frame needs
        forces or an energy)."""
        frames = list(frames)
        self.prepare(frames)
        self.solve(self.accumulate(frames))
        self.n_train_frames_ = len(frames)
        return self

    def prepare(self, frames):
        """Species, references (shared SOAP machinery) and the per-species energy offsets."""
        self._check_settings()
        frames = list(frames)
        if not frames:
            raise ValueError("no training frames")
        for index, frame in enumerate(frames):
            if keys.forces_of(frame) is None and keys.energy_of(frame) is None:
                raise BornDataError("training frame has neither forces nor an energy",
                                    path=source_of(frame, index), key=keys.FORCES)
        species = tuple(sorted({int(z) for f in frames for z in f.numbers}))
        self.reference_set_ = ReferenceSet.select(
            frames, self.soap_settings, species, self.species_channels, int(self.n_sparse),
            self.sparse_method, int(self.max_pool), self.seed, self._check_memory,
            self.progress)
        self.term_ = EnergyTerm(self.zeta, self.regulariser).prepare(self.reference_set_,
                                                                     self._check_memory)
        self.core_radii_ = float(self.core_margin) * shortest_distances(
            frames, species, float(self.cutoff))
        self.energy_offsets_ = self._fit_offsets(frames, species)
        return self

    @staticmethod
    def _fit_offsets(frames, species):
        """{Z: ε_Z} eV from the energies on the species counts (minimum-norm least squares;
        all zero without energies)."""
        labelled = [f for f in frames if keys.energy_of(f) is not None]
        if not labelled:
            return {z: 0.0 for z in species}
        counts = np.array([[np.sum(f.numbers == z) for z in species] for f in labelled], float)
        energies = np.array([keys.energy_of(f) for f in labelled])
        eps = np.linalg.lstsq(counts, energies, rcond=None)[0]
        return {z: float(e) for z, e in zip(species, eps)}

    def _offset_energy(self, frame):
        return float(sum(self.energy_offsets_[int(z)] for z in frame.numbers))

    def _baseline(self, ctx, frame):
        """Core repulsion of one frame: (per-atom energies (N,) eV, forces (N, 3) eV/Å,
        virial (3, 3) eV)."""
        energy, g = core_energy_and_pair_gradients(self.core_radii_, float(self.core_stiffness),
                                                   ctx.fe.species_index, ctx.fe.pairs)
        return (energy, *forces_and_virial(g, ctx.fe.pairs, len(frame)))

    def accumulate(self, frames):
        """:class:`~bornml.models.force_equations.ForceFieldEquations` of ``frames``."""
        frames = list(frames)
        m = self.term_.n_columns()
        n_max = max(len(f) for f in frames)
        self._check_memory(FLOAT * (4 * m * m + 6 * n_max * m + 3 * 2048 * m),
                           f"force-field normal equations ({m} × {m}, 3 kinds) and the design "
                           f"of a {n_max}-atom frame", "lower n_sparse (--n-sparse)")
        eqs = ForceFieldEquations(m)
        use_stress = bool(self.stress_weight)
        for index, frame in enumerate(tqdm(frames, desc="fit: design",
                                           disable=None if self.progress else True)):
            ctx = self.reference_set_.expand(frame, index)
            energy, forces, virial = self.term_.design(ctx, frame)
            e_core, f_core, w_core = self._baseline(ctx, frame)  # the targets less the wall
            e_core = float(e_core.sum())
            root = np.sqrt(len(frame))
            e_ref, f_ref = keys.energy_of(frame), keys.forces_of(frame)
            if e_ref is not None:
                eqs.add("energy", energy / root,
                        (e_ref - self._offset_energy(frame) - e_core) / root)
            if f_ref is not None:
                eqs.add("forces", forces, (f_ref - f_core).reshape(-1))
            stress = keys.stress_of(frame) if use_stress else None
            if stress is not None and _volume(frame) > 0:
                eqs.add("stress", virial / root,
                        (_volume(frame) * stress - w_core).reshape(-1) / root)
            eqs.n_frames += 1
        self.reference_set_.release_design_cache()
        return eqs

    def solve(self, eqs):
        """Weights from accumulated equations with the current label weights and ω; the
        training force RMSE (eV/Å, from the sums) in ``training_rmse_``."""
        w = eqs.solve({"energy": self.energy_weight, "forces": self.force_weight,
                       "stress": self.stress_weight}, float(self.tikhonov),
                      self.term_.regulariser_matrix())
        self.term_.set_weights(w)
        self.training_rmse_ = {"forces": eqs.rmse("forces", w)}
        return self

    # -- prediction -------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "term_") or not self.term_.is_fitted():
            raise RuntimeError("model is not fitted; call fit(frames) or load_model(path)")

    def predict_frame(self, frame, index=0):
        """One ``ase.Atoms`` → {"energy": eV, "energies": (N,) eV, "forces": (N, 3) eV/Å,
        and for a periodic cell "stress": (3, 3) eV/Å³ (ASE sign)}."""
        self._check_fitted()
        ctx = self.reference_set_.expand(frame, index)
        e, forces, virial = self.term_.predict(ctx, frame)
        e_core, f_core, w_core = self._baseline(ctx, frame)
        e = e + np.array([self.energy_offsets_[int(z)] for z in frame.numbers]) + e_core
        forces, virial = forces + f_core, virial + w_core
        out = {keys.ENERGY: float(e.sum()), keys.ATOMIC_ENERGIES: e, keys.FORCES: forces}
        volume = _volume(frame)
        if volume > 0:
            out[keys.STRESS] = virial / volume
        return out

    def predict(self, frames):
        """Predictions for a frame (one dict) or a list of frames (one dict per frame)."""
        return predict_frames(self, frames)

    def calculator(self, **kwargs):
        """An ASE calculator (energy, forces, stress) of this model."""
        from ..force_field_calculator import ForceFieldCalculator

        return ForceFieldCalculator(self, **kwargs)

    @property
    def species_(self):
        return self.reference_set_.species

    @property
    def weights_(self):
        """Energy weights per species {Z: (M_Z,)} eV."""
        return self.term_.weights

    # -- persistence ------------------------------------------------------------------------
    def save(self, path):
        """Write the fitted model (npz + JSON, see :mod:`bornml.models.serialization`)."""
        from .serialization import write_archive

        self._check_fitted()
        arrays = self.reference_set_.arrays()
        arrays.update(self.term_.arrays())
        arrays["core_radii"] = self.core_radii_
        extra = {"energy_offsets": {str(z): e for z, e in self.energy_offsets_.items()}}
        write_archive(path, self, arrays, extra)

    @classmethod
    def _from_archive(cls, meta, arrays, path):
        model = cls(**meta["params"])
        species = tuple(int(z) for z in meta["species"])
        model.reference_set_ = ReferenceSet.from_arrays(model.soap_settings, species, arrays)
        model.term_ = EnergyTerm(model.zeta, model.regulariser).load(model.reference_set_,
                                                                     arrays)
        model.core_radii_ = np.asarray(arrays["core_radii"], dtype=float)
        model.energy_offsets_ = {int(z): float(e)
                                 for z, e in meta["extra"]["energy_offsets"].items()}
        return model
