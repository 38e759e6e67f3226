"""BEC prediction time of the MACE heads for one 192-atom water frame (CPU, one thread).

Each head is trained briefly (a few epochs on 5 frames: the weights do not change the cost)
with the learning-curve settings, then ``predict_frame`` (graph, forward pass, the backward
passes for Z, ASR projection) is timed: median of repeats after warm-up. One JSON line per
head and precision.

    python benchmarks/mace_predict_speed.py [--heads q p q+p] [--dtypes float32 float64]
"""

import argparse
import warnings

from _common import DATASETS, emit, median_ms, shared_data
from mace_learning_curve import COMMON, HYPERS


def mace_predict_ms(model, frame, repeats=20, warmup=2):
    """Median wall time (ms) of ``model.predict_frame(frame)`` and all times."""
    return median_ms(lambda: model.predict_frame(frame), repeats=repeats, warmup=warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", default=["q", "p", "q+p"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    warnings.filterwarnings("ignore", category=UserWarning)
    import torch

    torch.set_num_threads(args.threads)
    import bornml
    from bornml.models.mace_model import MaceBECModel

    frames = bornml.read_frames(shared_data() / DATASETS["water"])
    frame = frames[-1]
    for head in args.heads:
        for dtype in args.dtypes:
            hypers = dict(COMMON, **HYPERS["water"], head=head, dtype=dtype, max_epochs=3)
            model = MaceBECModel(**hypers).fit(frames[:5])
            median, times = mace_predict_ms(model, frame, repeats=args.repeats)
            emit({"benchmark": "predict_speed", "system": "water", "model": model.model_type,
                  "n_atoms": len(frame), "dtype": dtype, "device": str(model.torch_device),
                  "torch_threads": torch.get_num_threads(), "median_ms": median,
                  "min_ms": min(times), "repeats": len(times), "hypers": hypers})


if __name__ == "__main__":
    main()
