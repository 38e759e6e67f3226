"""Normal equations of a kernel model: accumulate once, solve for any terms and regularisation.

For every frame the learnt terms' design columns Φ = [Φ_q | Φ_p] (Born-charge rows, atom-major,
(N·9, n)) are added to

    A = ΦᵀΦ,  b = Φᵀz   (z the ASR-corrected DFT Born charges, e),
    A_c = Φ_qᵀΦ_q, b_c = Φ_qᵀ t   (charge rows, t_i = tr(Z_i)/3; for λ_q)
    o_s = Φᵀ vec((δ_s − n_s/N) ⊗ I) per species s (the fixed-charge term moved to the right)
    S = the sum-rule rows of every periodic frame, R/√N (9, n) with R = Σ_j Z_j^local the
        residual the ASR projection removes (linear in the weights; zero for molecules)
    Σ tr(Z_i)/3 and counts per species (the default fixed charges)

split into ``n_folds`` parts by frame (k-fold cross-validation costs no extra pass: the
training equations of a fold are the total minus the fold). :meth:`KernelEquations.solve`
then gives the weights of any subset of terms for any (ω_q, ω_p, λ_q) and fixed charges:

    (A_TT + λ_q A_c + μ S_TᵀS_T + ω_q s_q R_q ⊕ ω_p s_p R_p) w = b_T + λ_q b_c − Σ_s q⁰_s o_s,T

with s_t = tr(A_tt)/n_t (so ω is dimensionless and the same value works across data sets).
μ S ᵀS (the sum-rule weight) adds μ·Σ_frames Σ_j |R/N|² — the squared size of the part the
projection removes, summed over atoms — to the least-squares objective, so the learnt total
charge is conserved instead of being corrected afterwards (μ = 1: the removed part costs as
much as an error of the same size).
"""

import numpy as np

from .. import keys
from .fit import solve_in_place


def asr_corrected(bec):
    """Subtract the mean over atoms: the DFT targets obey the acoustic sum rule exactly."""
    return bec - bec.mean(axis=0)


#: the per-fold sums besides the n×n matrix and the per-species dicts
_SUMMED = ("b", "c", "charge_a", "charge_b", "offsets", "trace_targets", "trace_gram", "n_rows")


class _Part:
    def __init__(self, n, n_charge, species):
        self.a = np.zeros((n, n))
        self.b = np.zeros(n)
        self.c = 0.0  # Σ z² (validation errors from the sums alone)
        self.charge_a = np.zeros((n_charge, n_charge))
        self.charge_b = np.zeros(n_charge)
        self.offsets = np.zeros((len(species), n))
        self.trace_targets = np.zeros(len(species))  # Σ_j tr(Z_j)(δ_s(j) − n_s/N)
        self.trace_gram = np.zeros((len(species), len(species)))  # Σ_j 3 a_s(j) a_t(j)
        self.trace_sums = {z: 0.0 for z in species}
        self.counts = {z: 0 for z in species}
        self.n_rows = 0
        self.sum_rule = []  # (9, n) rows R/√N of the periodic frames of this fold


class KernelEquations:
    """Accumulated normal equations (see module docstring).

    ``blocks``: term name → slice of its columns; ``n_folds`` parts (frame k goes to fold
    k mod n_folds). ``first_frame``: the index k of the first frame added — partial equations
    of a chunk of frames [first_frame, ...), which :meth:`merge` adds to those of the frames
    before it (the sums are additive over frames).
    """

    def __init__(self, blocks, species, n_charge, n_folds=1, first_frame=0):
        self.blocks = dict(blocks)
        self.species = tuple(species)
        self.n = max((s.stop for s in blocks.values()), default=0)
        self.n_charge = n_charge
        self.parts = [_Part(self.n, n_charge, species) for _ in range(max(1, n_folds))]
        self.first_frame = int(first_frame)
        self.n_frames = 0
        self._sum_rule_gram_cache = None  # (column set, live columns, SᵀS of all folds)

    def add(self, design, charge_design, frame, sum_rule=None):
        """Add one frame: ``design`` (N·9, n), ``charge_design`` (N, n_charge), ``sum_rule``
        (9, n) the unprojected Σ_j Z_j^local per column, or None (a molecule: no projection)."""
        part = self.parts[(self.first_frame + self.n_frames) % len(self.parts)]
        self.n_frames += 1
        if sum_rule is not None:
            part.sum_rule.append(sum_rule / np.sqrt(len(frame)))
            self._sum_rule_gram_cache = None
        target = asr_corrected(keys.bec_of(frame))
        z = target.reshape(-1)
        part.a += design.T @ design  # (one transient n×n product)
        part.b += design.T @ z
        part.c += float(z @ z)
        part.n_rows += len(z)
        traces = np.trace(target, axis1=1, axis2=2) / 3.0
        if self.n_charge:
            part.charge_a += charge_design.T @ charge_design
            part.charge_b += charge_design.T @ traces
        n_atoms = len(frame)
        rows = design.reshape(n_atoms, 3, 3, -1)
        diag = rows[:, 0, 0] + rows[:, 1, 1] + rows[:, 2, 2]  # Φᵀ vec(e_j ⊗ I) per atom j
        total = diag.sum(axis=0)
        shares = np.stack([(frame.numbers == s) - np.mean(frame.numbers == s)
                           for s in self.species], axis=1)  # a_s(j) (N, S)
        part.trace_targets += 3.0 * traces @ shares
        part.trace_gram += 3.0 * shares.T @ shares
        for k, s in enumerate(self.species):
            mask = frame.numbers == s
            n_s = int(mask.sum())
            if n_s:
                part.offsets[k] += diag[mask].sum(axis=0) - (n_s / n_atoms) * total
                part.trace_sums[s] += float(traces[mask].sum())
                part.counts[s] += n_s

    def merge(self, other):
        """Add the partial equations ``other`` of the frames that follow these (``other``
        .first_frame == first_frame + n_frames, same columns, species and folds) in place:
        every fold's sums are added and its sum-rule rows appended in frame order, so merging
        the chunks of a frame list in order gives the equations of the whole list (up to the
        order of floating-point additions). Returns self."""
        if (other.blocks != self.blocks or other.species != self.species
                or other.n_charge != self.n_charge or len(other.parts) != len(self.parts)):
            raise ValueError("equations with other columns, species or folds cannot be merged")
        if other.first_frame != self.first_frame + self.n_frames:
            raise ValueError(f"merge the chunks in frame order: these equations end at frame "
                             f"{self.first_frame + self.n_frames}, the other starts at "
                             f"{other.first_frame}")
        for mine, theirs in zip(self.parts, other.parts):
            mine.a += theirs.a
            for name in _SUMMED:
                setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
            for s in self.species:
                mine.trace_sums[s] += theirs.trace_sums[s]
                mine.counts[s] += theirs.counts[s]
            mine.sum_rule.extend(theirs.sum_rule)
        self.n_frames += other.n_frames
        self._last_training = self._sum_rule_gram_cache = None
        return self

    __iadd__ = merge

    def project(self, name, basis):
        """Replace the raw columns of term ``name`` by coordinates on ``basis`` (raw, r)."""
        block = self.blocks[name]
        keep = np.r_[0:block.start, block.stop:self.n]
        r = basis.shape[1]
        new_n = self.n - (block.stop - block.start) + r
        order = list(self.blocks)
        new_blocks, start = {}, 0
        for key in order:
            s = self.blocks[key]
            size = r if key == name else s.stop - s.start
            new_blocks[key] = slice(start, start + size)
            start += size
        for part in self.parts:
            t = np.zeros((self.n, new_n))  # raw → new coordinates
            t[keep, np.r_[0:new_blocks[name].start, new_blocks[name].stop:new_n]] = 1.0
            t[block, new_blocks[name]] = basis
            part.a = t.T @ part.a @ t
            part.b = t.T @ part.b
            part.offsets = part.offsets @ t
            part.sum_rule = [rows @ t for rows in part.sum_rule]
        self.blocks, self.n = new_blocks, new_n
        self._last_training = self._sum_rule_gram_cache = None
        return self

    # -- sums -------------------------------------------------------------------------------
    def _combined(self, signs):
        """A _Part without the n×n matrix: Σ_k signs[k]·(vector and small sums of fold k)."""
        out = _Part(0, self.n_charge, self.species)
        out.a = None
        out.b = np.zeros(self.n)
        out.offsets = np.zeros((len(self.species), self.n))
        for sign, p in zip(signs, self.parts):
            if not sign:
                continue
            for name in _SUMMED:
                setattr(out, name, getattr(out, name) + sign * getattr(p, name))
            for s in self.species:
                out.trace_sums[s] += sign * p.trace_sums[s]
                out.counts[s] += sign * p.counts[s]
        return out

    def columns(self, terms):
        return np.concatenate([np.arange(self.blocks[t].start, self.blocks[t].stop)
                               for t in terms]).astype(int)

    def training_part(self, exclude=None):
        """Vector and small sums over every fold but ``exclude`` (the n×n matrix is formed
        only inside :meth:`solve`, in place); the last one asked for is kept."""
        last = getattr(self, "_last_training", None)
        if last is None or last[0] != exclude:
            signs = [0 if k == exclude else 1 for k in range(len(self.parts))]
            last = self._last_training = (exclude, self._combined(signs))
        return last[1]

    def _matrix(self, idx, exclude):
        """A[idx, idx] summed over the folds but ``exclude``, as one new array: the folds are
        the only stored n×n matrices, so k folds cost (k + 1)·n² at the peak."""
        whole = len(idx) == self.n and np.array_equal(idx, np.arange(self.n))
        use = [p.a for k, p in enumerate(self.parts) if k != exclude]
        lhs = use[0].copy() if whole else use[0][np.ix_(idx, idx)]
        for a in use[1:]:
            if whole:
                lhs += a
            else:
                for rows in np.array_split(np.arange(len(idx)), max(1, len(idx) // 512)):
                    lhs[rows] += a[np.ix_(idx[rows], idx)]
        return lhs

    def sum_rule_rows(self, exclude=None):
        """The stacked sum-rule rows S (9·F, n) of every fold but ``exclude``."""
        rows = [r for k, p in enumerate(self.parts) if k != exclude for r in p.sum_rule]
        return np.concatenate(rows) if rows else np.zeros((0, self.n))

    def _sum_rule_gram(self, idx, exclude):
        """(live, SᵀS): the columns of ``idx`` (positions in it) that some sum-rule row touches
        (the charge columns) and the Gram matrix of the rows of every fold but ``exclude``
        over them. The all-fold product is formed once per column set (cross-validation asks
        for it at every grid point and fold); a fold's own product is subtracted."""
        cache = self._sum_rule_gram_cache
        if cache is None or cache[0] != idx.tobytes():
            rows = self.sum_rule_rows()[:, idx]
            live = np.flatnonzero(np.any(rows != 0, axis=0))
            rows = rows[:, live]
            cache = self._sum_rule_gram_cache = (idx.tobytes(), live, rows.T @ rows)
        _, live, total = cache
        if exclude is None or not self.parts[exclude].sum_rule:
            return live, total
        fold = np.concatenate(self.parts[exclude].sum_rule)[:, idx[live]]
        return live, total - fold.T @ fold

    def _lhs_builder(self, terms, regularisers, omegas, charge_regularisation, exclude,
                     sum_rule_weight):
        """(build, slices): ``build(jitter)`` returns a fresh regularised normal matrix
        A_reg (n_T, n_T) of the learnt ``terms``; ``slices``: [(term, its columns)]."""
        eq = self.training_part(exclude)
        idx = self.columns(terms)
        slices, start = [], 0
        for t in terms:
            n_t = self.blocks[t].stop - self.blocks[t].start
            slices.append((t, slice(start, start + n_t)))
            start += n_t

        sum_rule, live = None, None
        if sum_rule_weight:
            live, gram = self._sum_rule_gram(idx, exclude)
            sum_rule = sum_rule_weight * gram

        def build(jitter):
            lhs = self._matrix(idx, exclude)
            traces = {t: float(np.trace(lhs[sl, sl])) for t, sl in slices}
            if sum_rule is not None:
                lhs[np.ix_(live, live)] += sum_rule
            for t, sl in slices:
                if t == "charges" and charge_regularisation:
                    lhs[sl, sl] += charge_regularisation * eq.charge_a
                n_t = sl.stop - sl.start
                scale = traces[t] / n_t if traces[t] > 0 else 1.0
                if regularisers[t] is None:
                    lhs[sl, sl][np.diag_indices(n_t)] += omegas[t] * scale
                else:
                    lhs[sl, sl] += omegas[t] * scale * regularisers[t]
            if jitter:
                lhs[np.diag_indices(len(idx))] += jitter * np.trace(lhs) / len(idx)
            return lhs

        return build, slices

    def regularised_matrix(self, terms, regularisers, omegas, charge_regularisation=0.0,
                           exclude=None, sum_rule_weight=0.0):
        """A_reg (n_T, n_T): the matrix :meth:`solve` factorises for the same arguments (the
        posterior precision of the weights is A_reg/σ², :mod:`bornml.models.posterior`)."""
        build, _ = self._lhs_builder(terms, regularisers, omegas, charge_regularisation,
                                     exclude, sum_rule_weight)
        return build(0.0)

    def solve(self, terms, regularisers, omegas, charge_regularisation=0.0,
              fixed_charges=None, exclude=None, sum_rule_weight=0.0):
        """Weights (in ``terms`` order, concatenated) for the learnt ``terms`` (names).

        ``regularisers``/``omegas``: name → R_t matrix (None = identity) / ω_t;
        ``fixed_charges``: {Z: q⁰} or None; ``exclude``: a fold left out (cross-validation);
        ``sum_rule_weight``: μ (dimensionless, see the module docstring).
        Memory: one n×n matrix beyond the stored folds (factorised in place)."""
        eq = self.training_part(exclude)
        idx = self.columns(terms)
        b = eq.b[idx].copy()
        if fixed_charges is not None:
            q0 = np.array([fixed_charges[s] for s in self.species])
            b -= q0 @ eq.offsets[:, idx]
        build, slices = self._lhs_builder(terms, regularisers, omegas, charge_regularisation,
                                          exclude, sum_rule_weight)
        if charge_regularisation and "charges" in terms:
            sl = dict(slices)["charges"]
            b[sl] += charge_regularisation * eq.charge_b
        return solve_in_place(build, b)

    def validation_error(self, terms, weights, fold, fixed_charges=None):
        """Sum of squared Born-charge errors (e²) and row count of fold ``fold`` from its sums
        alone: wᵀA_f w − 2 wᵀ(b_f − Σ q⁰ o_f) + c_f (+ the fixed-charge self term)."""
        part = self.parts[fold]
        idx = self.columns(terms)
        full = np.zeros(self.n)
        full[idx] = weights
        quad = float(full @ (part.a @ full))  # wᵀA_f w without copying A_f[idx, idx]
        b, c = part.b[idx].copy(), part.c
        if fixed_charges is not None:  # targets z − Σ_s q⁰_s a_s⊗I
            q0 = np.array([fixed_charges[s] for s in self.species])
            b -= q0 @ part.offsets[:, idx]
            c += q0 @ part.trace_gram @ q0 - 2 * q0 @ part.trace_targets
        sse = float(quad - 2 * weights @ b + c)
        return max(sse, 0.0), part.n_rows
