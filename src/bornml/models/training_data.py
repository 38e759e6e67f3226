"""What every model shares around ``fit`` and ``predict``: checks of training frames, error
sources, and prediction over one frame or many."""

from .. import keys
from ..errors import BornDataError


def source_of(frame, index):
    """The file (or "frame <index>") a frame came from, for error messages."""
    return frame.info.get(keys.SOURCE, f"frame {index}")


def training_species(frames):
    """Sorted atomic numbers of ``frames`` after checking that each carries ``arrays["bec"]``;
    raises ValueError for no frames and BornDataError naming the file and frame otherwise."""
    if not frames:
        raise ValueError("no training frames")
    for index, frame in enumerate(frames):
        if keys.BEC not in frame.arrays:
            raise BornDataError("no Born charges in training frame",
                                path=source_of(frame, index), key=keys.BEC)
    return tuple(sorted({int(z) for f in frames for z in f.numbers}))


def predict_frames(model, frames):
    """``model.predict_frame`` for one ``ase.Atoms`` (a dict) or a list (a list of dicts, with a
    progress bar when ``model.progress``)."""
    from ase import Atoms
    from tqdm.auto import tqdm

    if isinstance(frames, Atoms):
        return model.predict_frame(frames)
    return [model.predict_frame(f, i) for i, f in enumerate(
        tqdm(frames, desc="predict", disable=None if model.progress else True))]
