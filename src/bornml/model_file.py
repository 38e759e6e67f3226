"""A model given by its file, loaded once per process, and predictions on a runner.

Only the path travels to Dask workers; each process loads the model once (cached by path,
size and modification time) and keeps it for every later task.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

#: frames per prediction task (results come back in order)
PREDICT_CHUNK = 16


@dataclass(frozen=True)
class ModelFile:
    """A trained model file (any type :func:`bornml.models.serialization.load_model` reads)."""

    path: str

    def load(self):
        """The model, loaded at most once per process (progress bars off)."""
        p = Path(self.path).resolve()
        st = p.stat()
        return _load_model(str(p), st.st_size, st.st_mtime_ns)

    def identity(self):
        """What a cache key needs: absolute path, size (bytes) and modification time (ns)."""
        st = Path(self.path).stat()
        return [str(Path(self.path).resolve()), st.st_size, st.st_mtime_ns]


@functools.lru_cache(maxsize=2)
def _load_model(path, size, mtime_ns):
    from .models.serialization import load_model

    model = load_model(path)
    model.progress = False
    return model


def _predict_chunk(model_file, frames, return_std=False, uncertainty="sampled"):
    """``model.predict(frames)`` (a list of dicts) of one chunk (runs on a worker)."""
    model = model_file.load()
    if return_std:
        return model.predict(list(frames), return_std=True, uncertainty=uncertainty)
    return model.predict(list(frames))


def predict_on(runner, model_file, frames, chunk=PREDICT_CHUNK, return_std=False,
               uncertainty="sampled"):
    """Predictions (one dict per frame, in order) of ``model_file`` for ``frames``, computed
    in chunks of ``chunk`` frames on ``runner`` (:mod:`bornml.parallel`); each frame's
    prediction is computed as ``model.predict`` computes it (``return_std``: with the
    posterior std, kernel models, by the route ``uncertainty``)."""
    from .parallel import frame_chunks

    n = len(frames)
    parts = runner.ordered(_predict_chunk, [(model_file, frames[a:b], return_std, uncertainty)
                                            for a, b in frame_chunks(n, -(-n // chunk))])
    return [p for part in parts for p in part]
