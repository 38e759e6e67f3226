"""Progress over chunks of work: frames done, frames/s and the time left, on stderr.

On a terminal one line is redrawn at most twice a second; otherwise (batch-job logs) a line
is printed every ``interval`` seconds and at the end. Frames taken from a cache count as done
but not in the rate.
"""

import sys
import time


def _duration(seconds):
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ChunkProgress:
    """``add(frames, chunks, label)`` what is to be done; ``update(frames, cached=False)`` per
    finished chunk; ``close()`` prints the last line. ``enabled=False`` prints nothing."""

    def __init__(self, desc, enabled=True, interval=None, stream=None):
        self.desc = desc
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.5 if self.tty else 30.0)
        self.total = self.done = self.cached = self.chunks = self.chunks_done = 0
        self.label = ""
        self.start = time.perf_counter()
        self.last = -float("inf")

    def add(self, frames, chunks, label=""):
        self.total += frames
        self.chunks += chunks
        self.label = label

    def rate(self):
        """Frames computed per second since the start (cached frames excluded)."""
        elapsed = time.perf_counter() - self.start
        return (self.done - self.cached) / elapsed if elapsed > 0 else 0.0

    def line(self):
        rate = self.rate()
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "?"
        cached = f", {self.cached} from cache" if self.cached else ""
        return (f"{self.desc} {self.label}: {self.chunks_done}/{self.chunks} chunks, "
                f"{self.done}/{self.total} frames{cached}, {rate:.1f} frames/s, ETA {eta}")

    def update(self, frames, cached=False):
        self.done += frames
        self.chunks_done += 1
        self.cached += frames if cached else 0
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self._print()

    def _print(self, end=""):
        if self.tty:
            print("\r" + self.line() + "\033[K", end=end, file=self.stream, flush=True)
        else:
            print(self.line(), file=self.stream, flush=True)

    def close(self):
        if self.enabled and self.chunks:
            self._print(end="\n")
