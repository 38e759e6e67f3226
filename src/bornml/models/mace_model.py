"""MACE comparator: monopole (mace-q), dipole (mace-p) and combined (mace-q+p) heads.

    P = Σ_i q'_i r_i + Σ_i p_i,   q'_i = q_i − mean(q)   (e·Å)
    Z_j = ∂P/∂r_j by automatic differentiation, image resolved in periodic cells and
          projected onto the acoustic sum rule there (see :mod:`bornml.models.mace_bec`)

q_i from an invariant (0e) readout, p_i from an l=1 (1o) readout of a MACE network
(:mod:`bornml.models.mace_network`). The dipole head alone uses fixed species charges q⁰ (the
training-set mean of tr(Z)/3 per species), as the kernel dipole model. Trained on DFT Born
charges (:mod:`bornml.models.mace_training`). Needs torch and mace-torch (optional extra).

Periodic frames need ``num_interactions=1`` (the default): the local, image-resolved form of
Z is exact only when q_i depends on the edges centred at i. Molecules allow more layers.
"""

try:
    import mace  # noqa: F401  (import mace before e3nn)
    import torch
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "MACE models need torch and mace-torch: pip install -c constraints.txt "
        "'bornml[mace]' (the constraints file pins the CPU build of torch)") from err

import warnings

import numpy as np

from .. import keys
from ..errors import BornDataError, ModelFileError
from ..metrics import held_out_indices
from .mace_bec import born_charges, frame_graph
from .mace_network import BECNetwork
from .mace_training import train
from .monopole import asr_corrected
from .params import ParamsMixin
from .training_data import predict_frames, training_species
from .training_data import source_of as _source

HEADS = ("q", "p", "q+p")
DTYPES = {"float64": torch.float64, "float32": torch.float32}
_NETWORK_PARAMS = ("r_max", "num_bessel", "num_polynomial_cutoff", "max_ell", "num_channels",
                   "correlation", "num_interactions", "radial_mlp")


class MaceBECModel(ParamsMixin):
    """MACE model of Born effective charges.

    Parameters
    ----------
    head : {"q", "p", "q+p"}
        Charges, dipoles, or both.
    r_max : float
        Cutoff radius of the graph (Å).
    num_channels, max_ell, correlation, num_interactions, num_bessel, num_polynomial_cutoff, radial_mlp
        MACE architecture: channels per irrep, largest l of the edge harmonics, body order − 1,
        message-passing layers (1 for periodic data), radial basis size, cutoff polynomial
        order, hidden widths of the radial network.
    charge_regularisation : float
        λ_q: weight of mean (q'_i − tr(Z_i)/3)² (e²) next to the mean squared Z error.
    max_epochs, learning_rate, batch_size, patience, weight_decay
        Adam on mini-batches of frames; ReduceLROnPlateau (factor 0.5, patience/3) and early
        stopping after ``patience`` epochs without a better validation RMSE of Z.
    validation_fraction : float
        Frames held out of ``fit`` for early stopping (evenly spaced).
    max_time : float or None
        Stop training after this many seconds (checked after each epoch).
    dtype : {"float64", "float32"}
    device : str or None
        torch device; None: "cuda" when available, else "cpu".
    seed : int
        Seeds the initial weights, the batch order and nothing else is random.
    progress : bool
        Progress bar over epochs.
    """

    def __init__(self, head="q+p", r_max=5.0, num_channels=16, max_ell=2, correlation=2,
                 num_interactions=1, num_bessel=8, num_polynomial_cutoff=5, radial_mlp=(32, 32),
                 charge_regularisation=0.0, max_epochs=200, learning_rate=5e-3, batch_size=4,
                 validation_fraction=0.1, patience=30, weight_decay=0.0, max_time=None,
                 dtype="float64", device=None, seed=0, progress=False):
        self.head = head
        self.r_max = r_max
        self.num_channels = num_channels
        self.max_ell = max_ell
        self.correlation = correlation
        self.num_interactions = num_interactions
        self.num_bessel = num_bessel
        self.num_polynomial_cutoff = num_polynomial_cutoff
        self.radial_mlp = radial_mlp
        self.charge_regularisation = charge_regularisation
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.weight_decay = weight_decay
        self.max_time = max_time
        self.dtype = dtype
        self.device = device
        self.seed = seed
        self.progress = progress

    @property
    def model_type(self):
        return f"mace-{self.head}"

    # -- helpers ----------------------------------------------------------------------------
    def _check_settings(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")

    @property
    def torch_device(self):
        if self.device:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def torch_dtype(self):
        return DTYPES[self.dtype]

    def _build_network(self, avg_num_neighbors):
        torch.manual_seed(int(self.seed))
        with warnings.catch_warnings():  # TorchScript notes from e3nn/mace constructors
            warnings.simplefilter("ignore", UserWarning)
            net = BECNetwork(len(self.species_), self.head, avg_num_neighbors=avg_num_neighbors,
                             **{k: getattr(self, k) for k in _NETWORK_PARAMS})
        return net.to(dtype=self.torch_dtype, device=self.torch_device)

    def _graph(self, frame, index, targets=None):
        numbers = np.asarray(frame.numbers)
        unknown = sorted(set(numbers.tolist()) - set(self.species_))
        if unknown:
            raise BornDataError(
                f"species {unknown} not in the model (trained on {list(self.species_)})",
                path=_source(frame, index), key=keys.NUMBERS)
        if self.num_interactions > 1 and np.any(frame.pbc):
            raise ValueError(f"{_source(frame, index)}: periodic frames need "
                             "num_interactions=1 for the MACE Born charges (see "
                             "bornml.models.mace_bec)")
        species = np.searchsorted(self.species_, numbers)
        return frame_graph(frame, species, float(self.r_max), self.torch_dtype, targets)

    def _fixed_charges(self):
        if "q" in self.head:
            return None
        return torch.as_tensor(self.fixed_charges_, dtype=self.torch_dtype,
                               device=self.torch_device)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, frames):
        """Train on the Born charges ``frame.arrays["bec"]`` (N, 3, 3) e of ``frames``."""
        self._check_settings()
        frames = list(frames)
        self.species_ = training_species(frames)
        targets = [asr_corrected(keys.bec_of(f)) for f in frames]
        graphs = [self._graph(f, i, t) for i, (f, t) in enumerate(zip(frames, targets))]
        val = held_out_indices(len(frames), self.validation_fraction) if len(frames) > 1 \
            else np.array([], dtype=int)
        train_idx = np.setdiff1d(np.arange(len(frames)), val)
        avg = float(np.mean([g.edge_index.shape[1] / len(g.species)
                             for g in (graphs[k] for k in train_idx)]))
        self._init_statistics([frames[k] for k in train_idx], [targets[k] for k in train_idx])
        self.network_ = self._build_network(max(avg, 1.0))
        self._set_scales()
        device = self.torch_device
        summary = train(
            self.network_, [graphs[k].to(device) for k in train_idx],
            [graphs[k].to(device) for k in val], fixed_charges=self._fixed_charges(),
            max_epochs=int(self.max_epochs), learning_rate=float(self.learning_rate),
            batch_size=int(self.batch_size), patience=int(self.patience),
            charge_regularisation=float(self.charge_regularisation),
            weight_decay=float(self.weight_decay), max_time=self.max_time, seed=int(self.seed),
            progress=self.progress)
        summary.update(n_train_frames=len(train_idx), n_validation_frames=len(val),
                       validation_frames=val.tolist(), device=str(device))
        self.training_summary_ = summary
        self.n_train_frames_ = len(frames)
        return self

    def _init_statistics(self, frames, targets):
        """Per-species mean of tr(Z)/3 (e), spread of the rest: the readout offsets/scales."""
        numbers = np.concatenate([f.numbers for f in frames])
        bec = np.concatenate(targets)
        iso = np.trace(bec, axis1=1, axis2=2) / 3.0
        shift = np.array([iso[numbers == z].mean() for z in self.species_])
        # neutral on average over the training set (a constant offset is removed anyway)
        counts = np.array([(numbers == z).sum() for z in self.species_])
        shift -= (shift * counts).sum() / counts.sum()
        rest = iso - shift[np.searchsorted(self.species_, numbers)]
        aniso = bec - np.eye(3) * iso[:, None, None]
        self.statistics_ = {"q_shift": shift.tolist(),
                            "q_scale": float(max(rest.std(), 1e-3)),
                            "p_scale": float(max(np.sqrt(np.mean(aniso ** 2)), 1e-3))}
        self.fixed_charges_ = shift.tolist()

    def _set_scales(self):
        net, st = self.network_, self.statistics_
        with torch.no_grad():
            net.q_shift.copy_(torch.as_tensor(st["q_shift"]))
            net.q_scale.fill_(st["q_scale"])
            net.p_scale.fill_(st["p_scale"])

    # -- prediction -------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "network_"):
            raise RuntimeError("model is not fitted; call fit(frames) or load_model(path)")

    def predict_frame(self, frame, index=0):
        """Prediction for one ``ase.Atoms``: dict with ``charges`` (N,) e (neutral; the fixed
        species charges for mace-p), ``dipoles`` (N, 3) e·Å (heads with p), ``bec`` (N, 3, 3)
        e and ``asr_residual`` (3, 3) e (what the sum-rule projection removed)."""
        self._check_fitted()
        graph = self._graph(frame, index).to(self.torch_device)
        with torch.enable_grad():
            out = born_charges(self.network_, graph, self._fixed_charges())
        result = {keys.CHARGES: out[keys.CHARGES].detach().cpu().double().numpy(),
                  keys.BEC: out[keys.BEC].detach().cpu().double().numpy(),
                  keys.ASR_RESIDUAL: out[keys.ASR_RESIDUAL][0].detach().cpu().double().numpy()}
        if out[keys.DIPOLES] is not None:
            result[keys.DIPOLES] = out[keys.DIPOLES].detach().cpu().double().numpy()
        return result

    def predict(self, frames):
        """Predictions for a frame (one dict) or a list of frames (one dict per frame)."""
        return predict_frames(self, frames)

    def dipole_derivative(self, atoms, velocities):
        """Ṁ = Σ_j Z_j v_j (e·Å/fs) for velocities (N, 3) Å/fs, shape (3,)."""
        bec = self.predict_frame(atoms)[keys.BEC]
        return np.einsum("jab,jb->a", bec, np.asarray(velocities, dtype=float))

    # -- persistence ------------------------------------------------------------------------
    def save(self, path):
        """Write the fitted model to ``path``: npz with ``state/<name>`` arrays of the state
        dict and JSON metadata (never a pickle; see :mod:`bornml.models.serialization`)."""
        from .serialization import write_archive

        self._check_fitted()
        arrays = {f"state/{k}": v.detach().cpu().numpy()
                  for k, v in self.network_.state_dict().items()}
        extra = {"avg_num_neighbors": float(self.network_.interactions[0].avg_num_neighbors),
                 "statistics": self.statistics_, "fixed_charges": self.fixed_charges_}
        write_archive(path, self, arrays, extra)

    @classmethod
    def _from_archive(cls, meta, arrays, path):
        params = dict(meta["params"])
        if isinstance(params.get("radial_mlp"), list):  # JSON has no tuples
            params["radial_mlp"] = tuple(params["radial_mlp"])
        if str(params.get("device") or "").startswith("cuda") and not torch.cuda.is_available():
            params["device"] = None  # trained on a GPU, used here on the CPU
        model = cls(**params)
        if meta.get("model_type") != model.model_type:
            raise ModelFileError(f"{path}: model type {meta.get('model_type')!r} does not match "
                                 f"its head {params.get('head')!r}")
        extra = meta["extra"]
        model.species_ = tuple(int(z) for z in meta["species"])
        model.statistics_ = extra["statistics"]
        model.fixed_charges_ = extra["fixed_charges"]
        model.network_ = model._build_network(float(extra["avg_num_neighbors"]))
        state = model.network_.state_dict()
        missing = [k for k in state if f"state/{k}" not in arrays]
        if missing:
            raise ModelFileError(f"{path}: model file is missing network weights {missing[:3]}")
        try:
            model.network_.load_state_dict(
                {k: torch.as_tensor(arrays[f"state/{k}"]) for k in state})
        except RuntimeError as err:
            raise ModelFileError(f"{path}: network weights do not fit the architecture "
                                 f"({err})") from err
        model.network_.eval()
        return model


# -- command line hooks ---------------------------------------------------------------------
from .mace_options import add_mace_cli_options, mace_setting


def model_from_cli_args(head, args):
    """A :class:`MaceBECModel` from an argparse namespace (``head`` in "q", "p", "q+p", or
    "mace-q" etc.). Reads the options of :func:`add_mace_cli_options` (``r_max`` is the
    cutoff; the kernel models' ``cutoff`` is never read), ``seed``, ``no_progress`` and
    ``charge_regularisation``; options that are None or absent get their defaults
    (:data:`bornml.models.mace_options.MACE_OPTIONS`)."""
    head = head.removeprefix("mace-")
    shared = {name: getattr(args, name, None) for name in
              ("seed", "no_progress", "charge_regularisation")}
    return MaceBECModel(
        head=head, r_max=float(mace_setting(args, "r_max")),
        num_channels=mace_setting(args, "mace_channels"),
        max_ell=mace_setting(args, "mace_max_ell"),
        correlation=mace_setting(args, "mace_correlation"),
        charge_regularisation=float(shared["charge_regularisation"] or 0.0),
        max_epochs=mace_setting(args, "max_epochs"),
        learning_rate=mace_setting(args, "learning_rate"),
        batch_size=mace_setting(args, "batch_size"), patience=mace_setting(args, "patience"),
        max_time=mace_setting(args, "max_time"),
        dtype="float32" if mace_setting(args, "float32") else "float64",
        device=mace_setting(args, "device"),
        seed=0 if shared["seed"] is None else shared["seed"],
        progress=not shared["no_progress"])


__all__ = ["MaceBECModel", "add_mace_cli_options", "model_from_cli_args"]
