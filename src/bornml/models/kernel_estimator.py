"""One kernel estimator of Born effective charges built from physical terms.

    P = Σ_i q_i r_i + Σ_i p_i

- :class:`~bornml.models.charge_term.ChargeTerm` — learnt charges q_i (scalar kernel);
- :class:`~bornml.models.dipole_term.DipoleTerm` — learnt dipoles p_i (λ=1 kernel);
- :class:`~bornml.models.fixed_charge_term.FixedChargeTerm` — species charges q⁰ (no weights).

Each term owns its features, design columns, pair gradients for Z, regulariser block and its
arrays in the model file; the estimator owns what they share — the descriptor and the
reference environments (:class:`~bornml.models.reference_set.ReferenceSet`) and the normal
equations (:class:`~bornml.models.equations.KernelEquations`: accumulated once, solved for
any terms and any ω_q, ω_p, λ_q). The monopole (q), dipole (p) and combined (q+p) models are
presets that only choose the terms (:mod:`bornml.models.monopole`, :mod:`bornml.models.dipole`).
"""

import warnings

import numpy as np
from tqdm.auto import tqdm

from .. import keys
from ..memory import FLOAT, check_memory
from ..parallel import SerialRunner, current_runner, frame_chunks
from .cross_validation import FALLBACK, choose_regularisation
from .descriptor_settings import (
    check_descriptor_settings,
    check_radial_basis,
    soap_settings,
)
from .equations import KernelEquations
from .params import ParamsMixin
from .reference_set import ReferenceSet
from .training_data import predict_frames, training_species

#: regularisation settings; None = chosen by cross-validation in fit
REGULARISATION = ("tikhonov", "dipole_tikhonov", "charge_regularisation")

#: default μ of the presets with a charge term: weight of the sum-rule residual in the fit
#: (:mod:`bornml.models.equations`); chosen with ``benchmarks/sum_rule.py`` (README)
SUM_RULE_WEIGHT = 1.0

#: training frames per chunk of the normal equations: chunks are summed separately and added
#: in order, in this process or on Dask workers alike (so the weights do not depend on the
#: number of workers); each chunk's equations are (folds × n²) floats
ACCUMULATE_CHUNK = 8

#: settings that shape the descriptor, the references and the design columns
SHARED = ("cutoff", "max_radial", "max_angular", "atomic_width", "cutoff_width", "n_sparse",
          "sparse_method", "max_pool", "seed", "species_channels")


class KernelBECModel(ParamsMixin):
    """Base of the kernel presets: settings live in the preset constructors; this class holds
    the behaviour. Fitted state: ``reference_set_`` and ``terms_`` (name → term)."""

    model_type = None

    # -- what a preset chooses --------------------------------------------------------------
    def _make_terms(self):
        """{name: unfitted term} in design-column order (fixed charges have no columns)."""
        raise NotImplementedError

    def _omegas(self, values):
        """{learnt term name: ω} from the regularisation ``values``."""
        raise NotImplementedError

    # -- settings ---------------------------------------------------------------------------
    @property
    def soap_settings(self):
        return soap_settings(self)

    def _check_settings(self):
        """ValueError naming the setting for values that cannot work."""
        check_descriptor_settings(self)
        if int(self.cv_folds) != self.cv_folds or self.cv_folds < 2:
            raise ValueError(f"cv_folds must be an integer ≥ 2, got {self.cv_folds}")
        for name, value in self._given_regularisation().items():
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be ≥ 0 or None (cross-validation), got {value}")
        if not getattr(self, "sum_rule_weight", 0.0) >= 0:
            raise ValueError(f"sum_rule_weight must be ≥ 0, got {self.sum_rule_weight}")
        self._make_terms()  # the terms check their own settings (ζ, regulariser, charges)
        check_radial_basis(self)

    def _check_memory(self, n_bytes, what, hint):
        """Stop before a step that needs more than ``max_memory`` (see :mod:`bornml.memory`)."""
        return check_memory(n_bytes, what, hint, self.max_memory)

    def _learnt(self):
        return [t for t in self.terms_.values() if t.learnt]

    def _frame_design(self, ctx, frame):
        """(Φ (N·9, n_raw), Φ_q (N, M_q) or None, S (9, n_raw) or None): the learnt terms'
        Born-charge columns of one frame side by side, the charge rows of the charge term,
        and the unprojected sum Σ_j Z_j^local per column (None for a molecule)."""
        designs, charge_design, sums = [], None, []
        for term in self._learnt():
            out, charge_rows, sum_rows = term.design(ctx, frame)
            designs.append(out)
            sums.append(np.zeros((9, out.shape[1])) if sum_rows is None else sum_rows)
            if charge_rows is not None:
                charge_design = charge_rows
        sum_rule = np.concatenate(sums, axis=1) if ctx.fe.periodic else None
        return np.concatenate(designs, axis=1), charge_design, sum_rule

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, frames):
        """Fit to the Born charges ``frame.arrays["bec"]`` (N, 3, 3) e of ``frames``."""
        frames = list(frames)
        self.prepare(frames)
        eqs = self.accumulate(frames)
        self.solve(eqs)
        self.n_train_frames_ = len(frames)
        self._fit_posterior(eqs, frames)
        return self

    def _fit_posterior(self, eqs, frames=None):
        """The posterior of the weights (:mod:`bornml.models.posterior`) for
        ``predict(return_std=True)``; with the training ``frames``, the extrapolation
        threshold too."""
        from .posterior import Posterior

        self.posterior_ = Posterior.from_equations(self, eqs)
        if frames:
            self.posterior_.set_training_scores(self, frames)
        return self

    def prepare(self, frames):
        """Species, descriptor, reference environments (shared by the terms) and each
        term's own preparation (step 1 of fit)."""
        self._check_settings()
        frames = list(frames)
        species = training_species(frames)
        terms = self._make_terms()  # checks the term settings before any work
        for term in terms.values():  # terms without columns check the data before the work
            if not term.learnt:
                term.prepare(None, frames, self._check_memory)
        self.reference_set_ = ReferenceSet.select(
            frames, self.soap_settings, species, self.species_channels, int(self.n_sparse),
            self.sparse_method, int(self.max_pool), self.seed, self._check_memory,
            self.progress, runner=current_runner())
        for term in terms.values():
            if term.learnt:
                term.prepare(self.reference_set_, frames, self._check_memory)
        self.terms_ = terms
        return self

    def accumulate(self, frames, n_folds=None):
        """Normal equations of ``frames`` for the prepared terms
        (:class:`~bornml.models.equations.KernelEquations`), in ``n_folds`` parts (default:
        ``cv_folds`` when a regularisation setting is left to cross-validation, else 1);
        solve with :meth:`solve` as often as wanted
        (``model.set_params(tikhonov=ω).solve(eqs)``)."""
        frames = list(frames)
        if n_folds is None:
            n_folds = min(int(self.cv_folds), len(frames)) if self._needs_cv() else 1
        learnt = self._learnt()
        raw = [t.n_raw_columns() for t in learnt]
        n_cols = sum(raw)
        n_max = max(len(f) for f in frames)
        self._check_memory(
            # k folds + one working (or transient product) matrix, float64
            FLOAT * ((n_folds + 1) * n_cols ** 2 + 4 * 9 * n_max * n_cols
                     + 9 * len(frames) * n_cols),  # + the sum-rule rows
            f"normal equations ({n_cols} × {n_cols}"
            f"{f', {n_folds} folds' if n_folds > 1 else ''}) and the design matrix of a "
            f"{n_max}-atom frame ({9 * n_max} × {n_cols})", "lower n_sparse (--n-sparse)")
        blocks, start = {}, 0
        for term, size in zip(learnt, raw):
            blocks[term.name] = slice(start, start + size)
            start += size
        # partial equations of fixed chunks of frames, added in chunk order: the same sums
        # in this process and on any number of workers (current_runner)
        runner = current_runner() or SerialRunner()
        serial = isinstance(runner, SerialRunner)
        bar = tqdm(total=len(frames), desc="fit: design",
                   disable=None if self.progress and serial else True)
        shared = runner.share(self)
        eqs = runner.fold(_accumulate_chunk, [
            (shared, blocks, n_folds, frames[a:b], a, bar if serial else None)
            for a, b in frame_chunks(len(frames), -(-len(frames) // ACCUMULATE_CHUNK))],
            _merge)
        bar.close()
        self.reference_set_.release_design_cache()  # the solves need the memory more
        for term in learnt:
            basis = term.projection()
            if basis is not None:
                eqs.project(term.name, basis)
        # what another estimator needs to solve these equations (read only)
        eqs.reference_set = self.reference_set_
        eqs.prepared_terms = {t.name: t for t in learnt}
        eqs.shared_params = {k: v for k, v in self.get_params().items() if k in SHARED}
        return eqs

    def _add_frames(self, blocks, n_folds, frames, start=0, bar=None):
        """:class:`KernelEquations` of one chunk of ``frames`` (numbered from ``start``),
        before projection; ``bar``: a progress bar to advance, or None."""
        charge = self.terms_.get("charges")
        eqs = KernelEquations(blocks, self.reference_set_.species,
                              charge.n_columns() if charge else 0, n_folds, first_frame=start)
        for index, frame in enumerate(frames, start):
            design, charge_design, sum_rule = self._frame_design(
                self.reference_set_.expand(frame, index), frame)
            eqs.add(design, charge_design, frame, sum_rule)
            if bar is not None:
                bar.update(1)
        return eqs

    def fit_equations(self, eqs):
        """Fit from equations accumulated by any kernel model with the same descriptor and
        reference settings (:data:`SHARED`) whose terms include this model's learnt terms:
        fit once, solve many (q, p and q+p from one pass over the data)."""
        mine = {k: v for k, v in self.get_params().items() if k in SHARED}
        differ = sorted(k for k in mine if mine[k] != eqs.shared_params.get(k, mine[k]))
        if differ:
            raise ValueError(f"the equations were accumulated with other settings: {differ}")
        terms = self._make_terms()
        for name, term in terms.items():
            if not term.learnt:
                continue
            if name not in eqs.prepared_terms:
                raise ValueError(f"the equations have no {name!r} columns; accumulate them "
                                 "with a model that has this term (e.g. CombinedModel)")
            term.adopt(eqs.prepared_terms[name])
        self.reference_set_ = eqs.reference_set
        self.terms_ = terms
        if self._needs_cv() and len(eqs.parts) < 2:
            raise ValueError("these equations have one fold: give the regularisation "
                             "explicitly or accumulate(frames, n_folds=k)")
        self.solve(eqs)
        self.n_train_frames_ = eqs.n_frames
        self._fit_posterior(eqs)  # no frames here: no extrapolation threshold
        return self

    def _regularisers(self):
        return {t.name: t.regulariser_matrix() for t in self._learnt()}

    def _given_regularisation(self):
        """{setting: value or None (= choose by cross-validation)} of this preset."""
        return {k: getattr(self, k) for k in REGULARISATION if k in self._get_param_names()}

    def _needs_cv(self):
        return any(v is None for v in self._given_regularisation().values())

    def _solve_weights(self, eqs, values, exclude=None):
        """(weights, fixed charges or None) for regularisation ``values``."""
        fixed = self.terms_.get("fixed_charges")
        charges = None
        if fixed is not None:
            part = eqs.training_part(exclude)
            fixed.set_from_traces(part.trace_sums, part.counts)
            charges = dict(fixed.charges)
        w = eqs.solve([t.name for t in self._learnt()], self._regularisers(),
                      self._omegas(values), float(values.get("charge_regularisation") or 0.0),
                      charges, exclude, float(getattr(self, "sum_rule_weight", 0.0)))
        return w, charges

    def solve(self, eqs):
        """Set the weights from accumulated equations. Regularisation settings left at None
        are chosen by k-fold cross-validation on the equations' folds (see
        :mod:`bornml.models.cross_validation`); the choice is ``regularisation_`` and the
        CV curve ``cv_curve_``."""
        given = self._given_regularisation()
        if self._needs_cv() and len(eqs.parts) < 2:
            warnings.warn(f"{type(self).__name__}: cross-validation needs ≥ 2 folds of frames; "
                          f"using {FALLBACK} for the settings left at None")
            values, curve = {k: FALLBACK[k] if v is None else v for k, v in given.items()}, []
        else:
            values, curve = choose_regularisation(self, eqs, given)
        self.regularisation_ = values
        self.cv_curve_ = curve
        w, _ = self._solve_weights(eqs, values)
        start = 0
        for term in self._learnt():
            n = term.n_columns()
            term.set_weights(w[start:start + n])
            start += n
        return self

    def design_matrix(self, frame, index=0):
        """(Φ (N·9, n), Φ_q (N, M_q)) of one frame: the learnt terms' Born-charge columns
        (before any projection) and the charge rows (empty without a charge term)."""
        self._check_fitted()
        design, charge_design, _ = self._frame_design(
            self.reference_set_.expand(frame, index), frame)
        return design, (np.zeros((len(frame), 0)) if charge_design is None else charge_design)

    # -- prediction -------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "terms_") or not all(t.is_fitted() for t in self.terms_.values()):
            raise RuntimeError("model is not fitted; call fit(frames) or load_model(path)")

    def predict_frame(self, frame, index=0, ctx=None):
        """Prediction for one ``ase.Atoms``: dict with ``charges`` (N,) e (neutral),
        ``bec`` (N, 3, 3) e, ``asr_residual`` (3, 3) e (what the sum-rule projection removed;
        0 for molecules) and, with a dipole term, ``dipoles`` (N, 3) e·Å. ``ctx``: the
        frame's expansion (``reference_set_.expand``) when the caller has it."""
        self._check_fitted()
        if ctx is None:
            ctx = self.reference_set_.expand(frame, index)
        n_atoms = len(frame)
        bec = np.zeros((n_atoms, 3, 3))
        out = {keys.CHARGES: np.zeros(n_atoms), keys.ASR_RESIDUAL: np.zeros((3, 3))}
        for term in self.terms_.values():  # each term adds to Z and gives its own keys
            part = term.predict(ctx, frame)
            bec += part.pop(keys.BEC)
            out.update(part)
        out[keys.BEC] = bec
        return out

    def predict(self, frames, return_std=False, uncertainty="sampled"):
        """Predictions for a frame (one dict) or a list of frames (one dict per frame); with
        ``return_std`` also ``bec_std`` (N, 3, 3), ``charges_std`` (N,) and
        ``uncertainty_score`` (e) from the posterior (:mod:`bornml.models.posterior`), by
        the route ``uncertainty``: "sampled" (16 posterior weight draws through the adjoint
        prediction, 3–5 plain predictions for q; ≈ 18 % sampling error per std) or "exact" (the
        frame's design rows, 16–26 plain predictions)."""
        if return_std:
            from .posterior import predict_with_std

            return predict_with_std(self, frames, uncertainty)
        return predict_frames(self, frames)

    def dipole_derivative(self, atoms, velocities):
        """Ṁ = Σ_j Z_j v_j (e·Å/fs) for velocities (N, 3) Å/fs, shape (3,); one adjoint pass
        per term, Z is never assembled."""
        self._check_fitted()
        v = np.asarray(velocities, dtype=float)
        ctx = self.reference_set_.expand(atoms)
        mdot = np.zeros(3)
        for term in self.terms_.values():
            mdot += term.dipole_derivative(ctx, atoms, v)
        return mdot

    # -- fitted quantities by their familiar names -------------------------------------------
    @property
    def species_(self):
        return self.reference_set_.species

    @property
    def references_(self):
        return self.reference_set_.references

    @property
    def reference_sources_(self):
        return self.reference_set_.sources

    @property
    def species_mixing_(self):
        return self.reference_set_.mixing

    @property
    def radial_basis_(self):
        return self.reference_set_.radial_basis

    @property
    def weights_(self):
        """Charge weights per species (M_z,) (models with a charge term)."""
        return self.terms_["charges"].weights

    @property
    def dipole_weights_(self):
        """Contracted dipole weights u_z (F,) per species (models with a dipole term)."""
        return self.terms_["dipoles"].weights

    @property
    def dipole_basis_(self):
        return self.terms_["dipoles"].bases

    @property
    def dipole_route_(self):
        return self.terms_["dipoles"].route_

    @property
    def fixed_charges_(self):
        return self.terms_["fixed_charges"].charges

    @property
    def learns_charges(self):
        return "charges" in self._term_names()

    def _term_names(self):
        return tuple(self._make_terms())

    def n_features(self):
        """Power-spectrum length D."""
        return self.reference_set_.n_features

    def n_design_columns(self):
        """Design columns of one frame before projection (charges + dipoles)."""
        return sum(t.n_raw_columns() for t in self._learnt())

    # -- persistence ------------------------------------------------------------------------
    def save(self, path):
        """Write the fitted model to ``path`` (npz + JSON metadata, never a pickle; see
        :mod:`bornml.models.serialization`)."""
        from .serialization import write_archive

        self._check_fitted()
        arrays = self.reference_set_.arrays()
        extra = {}
        for term in self.terms_.values():
            arrays.update(term.arrays())
            extra.update(term.extra())
        if getattr(self, "posterior_", None) is not None:
            arrays.update(self.posterior_.arrays(self))
            extra.update(self.posterior_.extra(self))
        write_archive(path, self, arrays, extra)

    @classmethod
    def _from_archive(cls, meta, arrays, path):
        model = cls(**meta["params"])
        species = tuple(int(z) for z in meta["species"])
        model.reference_set_ = ReferenceSet.from_arrays(model.soap_settings, species, arrays)
        model.terms_ = model._make_terms()
        for term in model.terms_.values():
            term.load(model.reference_set_, arrays, meta["extra"], path)
        from .posterior import Posterior

        model.posterior_ = Posterior.from_arrays(arrays, meta["extra"], model)
        return model


def _accumulate_chunk(model, blocks, n_folds, frames, start, bar=None):
    """Partial equations of one chunk of training frames (runs on a worker)."""
    return model._add_frames(blocks, n_folds, frames, start, bar)


def _merge(first, second):
    """Equations of two consecutive chunks (``first`` then ``second``) added."""
    return first.merge(second)
