"""Exceptions with enough context (file, frame, key) for a user to find the problem."""


class BornDataError(ValueError):
    """Bad or missing input data. The message names file, frame and key."""

    def __init__(self, message, *, path=None, frame=None, key=None):
        where = []
        if path is not None:
            where.append(f"file {str(path)!r}")
        if frame is not None:
            where.append(f"frame {frame}")
        if key is not None:
            where.append(f"key {key!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path, self.frame, self.key = path, frame, key


class ModelFileError(ValueError):
    """A model file that cannot be read: wrong format version, corrupt, or not a model."""


class MemoryLimitError(MemoryError):
    """A step would allocate more memory than allowed; raised *before* the allocation, with
    the estimate, the limit and the setting that reduces the need."""
