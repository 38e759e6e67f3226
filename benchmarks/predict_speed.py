"""BEC prediction time for one 192-atom water frame: adjoint route vs descriptor gradients.

Prints JSON lines. The main record has ``ms_per_frame`` (bornml's prediction: density
expansion, kernel, adjoint pull-back of ∂q/∂x to the pair vectors) and
``ms_power_spectrum_gradient_route`` (the same model with the full power-spectrum position
gradients ∂x_i/∂d_p materialised and contracted, in chunks of pairs), both medians over
``--repeats`` calls in the same run, and their ratio. The two routes' Born charges are
compared (max abs difference) so the comparison is between equal results. For scale, the
time featomic alone takes for the same power spectrum with position gradients (same basis,
before any contraction with the model) is printed too.

The dipole (p) and combined (q+p) kernel models are timed on the same frame in the same
run (one record each, ``ms_per_frame`` and ``ratio_to_q``); the MACE heads have their own
script, ``benchmarks/mace_predict_speed.py`` (torch).

    python benchmarks/predict_speed.py [--n-sparse 1000] [--repeats 20] [--models q p q+p]
                                       [--model-cache DIR]

``--model-cache DIR`` loads the fitted models from DIR (``water_<model>_<n_sparse>_
<train_frames>.npz``) when they are there and saves them there otherwise, so that runs of
different code versions time the same models without refitting (the fits take minutes).
"""

import argparse
import os
import platform
import time

import numpy as np
from _common import emit, median_ms
from learning_curve import load_split, model_for


def reference_route(model, frame, chunk=2048):
    """Born charges via materialised power-spectrum gradients (the slow route)."""
    from bornml.descriptors.soap import power_spectrum_pair_gradients
    from bornml.models.bec_assembly import assemble_bec
    from bornml.models.kernel import kernel_weighted_gradient

    fe, xhat, norms = model.reference_set_.expand(frame, 0)
    v = np.zeros_like(xhat)
    q = np.zeros(len(frame))
    for z in model.species_:
        sel = frame.numbers == z
        v[sel], q[sel] = kernel_weighted_gradient(xhat[sel], norms[sel], model.references_[z],
                                                  model.weights_[z], model.zeta)
    n_pairs = len(fe.pairs.centers)
    g = np.empty((n_pairs, 3))
    for start in range(0, n_pairs, chunk):
        idx = np.arange(start, min(start + chunk, n_pairs))
        grads = power_spectrum_pair_gradients(fe, idx)  # (n, 3, D)
        g[idx] = np.einsum("nxd,nd->nx", grads, v[fe.pairs.centers[idx]])
    bec, _, _ = assemble_bec(q, g, fe.pairs.centers, fe.pairs.neighbors, fe.pairs.vectors,
                             fe.positions, True)
    return bec


def fitted(model_type, train, args):
    """(fitted model, seconds spent fitting or loading, loaded?) for ``model_type``."""
    import bornml

    path = None
    if args.model_cache:
        os.makedirs(args.model_cache, exist_ok=True)
        path = os.path.join(args.model_cache, f"water_{model_type}_{args.n_sparse}_"
                                              f"{args.train_frames}.npz")
    start = time.perf_counter()
    if path and os.path.exists(path):
        return bornml.load_model(path), time.perf_counter() - start, True
    model, _ = model_for("water", model_type, args.n_sparse)
    model.fit(train)
    seconds = time.perf_counter() - start
    if path:
        model.save(path)
    return model, seconds, False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sparse", type=int, default=1000)
    parser.add_argument("--train-frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["q", "p", "q+p"],
                        choices=["q", "p", "q+p"])
    parser.add_argument("--model-cache", default=None,
                        help="folder of fitted models: load them from there, or fit and save")
    args = parser.parse_args()

    train, held = load_split("water", args.train_frames)
    frame = held[0]
    model, fit_s, loaded = fitted("q", train, args)

    fast, _ = median_ms(lambda: model.predict_frame(frame), args.repeats)
    slow, _ = median_ms(lambda: reference_route(model, frame), max(5, args.repeats // 4),
                               warmup=1)
    diff = float(np.abs(model.predict_frame(frame)["bec"] - reference_route(model, frame)).max())
    import featomic

    soap = featomic.SoapPowerSpectrum(**model.radial_basis_.featomic_hypers(model.cutoff_width))
    featomic_ms, _ = median_ms(lambda: soap.compute(frame, gradients=["positions"]),
                               max(5, args.repeats // 4), warmup=1)
    velocities = np.random.default_rng(0).normal(size=(len(frame), 3)) * 0.01
    mdot, _ = median_ms(lambda: model.dipole_derivative(frame, velocities), args.repeats)
    emit({"benchmark": "predict_speed", "system": "water 192 atoms",
          "model": {"type": "q", "n_sparse_per_species": {
                        str(z): len(r) for z, r in model.references_.items()},
                    **{k: v for k, v in model.get_params().items() if k != "n_sparse"}},
          "ms_per_frame": fast, "ms_power_spectrum_gradient_route": slow,
          "speedup": slow / fast, "ms_dipole_derivative": mdot,
          "ms_featomic_power_spectrum_with_position_gradients_only": featomic_ms,
          "speedup_vs_featomic_gradients_only": featomic_ms / fast,
          "max_abs_bec_difference_between_routes": diff,
          "repeats": args.repeats, "fit_seconds_for_setup": fit_s, "model_loaded": loaded,
          "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()})

    for model_type in [m for m in args.models if m != "q"]:
        other, other_fit_s, other_loaded = fitted(model_type, train, args)
        ms, _ = median_ms(lambda: other.predict_frame(frame), args.repeats)  # noqa: B023 (called here)
        mdot_ms, _ = median_ms(lambda: other.dipole_derivative(frame, velocities),  # noqa: B023
                               args.repeats)
        q_ms, _ = median_ms(lambda: model.predict_frame(frame), args.repeats)  # same conditions
        emit({"benchmark": "predict_speed", "system": "water 192 atoms",
              "model": {"type": model_type, **other.get_params()},
              "ms_per_frame": ms, "ms_dipole_derivative": mdot_ms, "ms_q_model_same_run": q_ms,
              "ratio_to_q": ms / q_ms, "repeats": args.repeats,
              "fit_seconds_for_setup": other_fit_s, "model_loaded": other_loaded,
              "cpu_count": os.cpu_count()})


if __name__ == "__main__":
    main()
