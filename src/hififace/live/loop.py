"""The live loop: newest frame in -> process -> mark (and overlay) -> every output, measured stage by stage.

:func:`run_live` takes a :class:`~hififace.live.capture.Capture`, a processor (``process(rgb, timestamp) ->
rgb``, e.g. :class:`hififace.live.swapper.FrameProcessor`; a stand-in in tests) and outputs (:mod:`.outputs`), and
runs until the source ends (a file without ``loop``), a fault stops the capture, a window's ``q`` is pressed,
``should_stop()`` says so, or Ctrl-C / SIGTERM: the outputs are then finalised (an MP4 file stays playable) and a
:class:`LiveReport` says what happened. The frames the processor is given are always the newest (older ones are
dropped, never queued), so the latency stays bounded however slow the processor is.

Latency is "glass to glass": from the frame's capture time stamp to the moment every output has it. The stages of
each frame: ``wait`` (captured -> taken by the loop), the processor's own (``detect``, ``track``, ``align``,
``swap``, ``paste`` for :class:`~hififace.live.swapper.FrameProcessor`), ``draw`` (mark and overlay) and
``output``.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ..utils.signals import Terminated
from .capture import Capture
from .overlay import draw_stats

log = logging.getLogger(__name__)

#: Per-frame measurements kept for the percentiles (the most recent ones; a live session may run for hours).
KEEP = 10_000


class Output(Protocol):
    """Where live frames go (:mod:`hififace.live.outputs`)."""

    name: str

    def write(self, frame: np.ndarray, timestamp: float) -> None: ...

    def poll(self) -> str | None: ...

    def close(self) -> None: ...


@dataclass
class Controls:
    """What the hot keys change: ``q`` (or Esc) quits, space pauses (the picture freezes; the input runs on and its
    frames are dropped), ``o`` toggles the overlay."""

    overlay: bool = False
    paused: bool = False
    quit: bool = False

    def key(self, key: str | None) -> None:
        if key in ("q", "Q", "\x1b"):
            self.quit = True
        elif key == " ":
            self.paused = not self.paused
            log.info("live: %s", "paused (space resumes)" if self.paused else "resumed")
        elif key in ("o", "O"):
            self.overlay = not self.overlay


@dataclass
class LiveReport:
    """What :func:`run_live` did.

    Attributes:
        source: the input's name. frames_in: frames read from it; frames_out: frames every output got;
        dropped: the others (replaced by a newer frame before they were taken, late, or left at the end), so
        ``frames_in == frames_out + dropped``. seconds: wall time from the first frame taken to the end.
        stages: stage -> per-frame seconds (the last :data:`KEEP` frames); ``total`` is the glass-to-glass latency.
        stopped: why it ended: ``end`` (the file ended), ``quit`` (a hot key or ``should_stop``), ``interrupted``
        (Ctrl-C), ``terminated`` (SIGTERM, through :func:`hififace.utils.signals.sigterm_as_interrupt`) or
        ``fault`` (then :attr:`fault` is the one line that says what happened).
    """

    source: str
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    seconds: float = 0.0
    stages: dict[str, deque] = field(default_factory=dict)
    stopped: str = "end"
    fault: str | None = None
    _recent: deque = field(default_factory=lambda: deque(maxlen=120), repr=False)

    @property
    def fps(self) -> float:
        """Frames delivered per second over the whole run."""
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    def add(self, stages: dict[str, float], t_out: float) -> None:
        for name, value in stages.items():
            self.stages.setdefault(name, deque(maxlen=KEEP)).append(float(value))
        self._recent.append((t_out, stages.get("total", 0.0)))

    def percentile(self, stage: str, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of a stage's per-frame seconds (None when nothing was measured)."""
        values = sorted(self.stages.get(stage, ()))
        if not values:
            return None
        k = (len(values) - 1) * q / 100.0
        lo, hi = int(k), min(int(k) + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (k - lo)

    def recent(self, seconds: float = 2.0) -> tuple[float, float | None]:
        """Frames per second and median latency over the last ``seconds`` (what the overlay shows)."""
        if not self._recent:
            return 0.0, None
        end = self._recent[-1][0]
        window = [(t, lat) for t, lat in self._recent if t >= end - seconds]
        span = end - window[0][0]
        fps = (len(window) - 1) / span if span > 0 else 0.0
        return fps, statistics.median(lat for _, lat in window)

    def summary(self) -> str:
        """One line: frames, fps, latency p50/p95."""
        p50, p95 = self.percentile("total", 50), self.percentile("total", 95)
        lat = f"; latency p50 {1000 * p50:.0f} ms, p95 {1000 * p95:.0f} ms" if p50 is not None else ""
        return (f"{self.frames_in} frame(s) in, {self.frames_out} out, {self.dropped} dropped in {self.seconds:.1f} s: "
                f"{self.fps:.2f} fps{lat}")

    def stage_line(self) -> str:
        """Median milliseconds per frame of each stage, e.g. ``wait 3, detect 12, swap 150, ...``."""
        parts = [f"{name} {1000 * self.percentile(name, 50):.0f}" for name in self.stages if name != "total"]
        return ", ".join(parts) + " (ms per frame, median)" if parts else ""


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Ctrl-C ignored within the block (in the main thread): finalising the outputs is not cut short by a second
    Ctrl-C, so an MP4 file is always left playable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_live(capture: Capture, process: Callable[[np.ndarray, float], np.ndarray], outputs: Sequence[Output], *,
             mark: Callable[[np.ndarray], np.ndarray] | None = None, overlay: bool = False,
             invisible: Callable[[np.ndarray], np.ndarray] | None = None, should_stop: Callable[[], bool] | None = None, on_stats: Callable[[LiveReport], None] | None = None,
             stats_every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> LiveReport:
    """Run the live loop (see the module docstring) and return its :class:`LiveReport`.

    ``process.last`` (a dict of stage -> seconds), when the processor has it, is recorded per frame. ``mark`` draws
    the visible mark (:class:`~hififace.live.overlay.VisibleMark`); ``overlay`` starts with the fps/latency overlay
    on; ``invisible(frame) -> frame`` then embeds the invisible watermark
    (:class:`~hififace.provenance.outputs.FrameMarker`), so every output (window, camera, stream, file) gets it. ``on_stats(report)`` is called after the first frame, then every ``stats_every`` seconds (a status line).
    The outputs are closed whatever happens; a failure to close one is raised after all are closed (unless another
    error is on its way).
    """
    report = LiveReport(capture.name)
    controls = Controls(overlay=overlay)
    started: float | None = None
    next_stats = clock() + stats_every
    capture.start()
    try:
        try:
            while True:
                for out in outputs:
                    controls.key(out.poll())
                if controls.quit or (should_stop is not None and should_stop()):
                    report.stopped = "quit"
                    break
                if controls.paused:
                    time.sleep(0.03)
                    continue
                item = capture.get(timeout=0.1)
                if item is None:
                    if capture.finished.is_set():
                        item = capture.get(timeout=0)  # the last frame may have come with the end
                        if item is None:
                            report.stopped = "fault" if capture.fault else "end"
                            break
                    else:
                        continue
                t0 = clock()
                started = t0 if started is None else started
                frame = process(item.frame, item.timestamp)
                t1 = clock()
                if mark is not None:
                    mark(frame)
                if controls.overlay:
                    fps, lat = report.recent()
                    draw_stats(frame, f"{fps:.1f} fps  {1000 * lat:.0f} ms" if lat is not None else "...")
                if invisible is not None:
                    frame = invisible(frame)
                t2 = clock()
                for out in outputs:
                    out.write(frame, item.timestamp)
                t3 = clock()
                stages = {"wait": t0 - item.timestamp, **dict(getattr(process, "last", {}) or {}),
                          "draw": t2 - t1, "output": t3 - t2, "total": t3 - item.timestamp}
                if not getattr(process, "last", None):
                    stages["process"] = t1 - t0
                report.frames_out += 1
                report.add(stages, t3)
                if on_stats is not None and (report.frames_out == 1 or t3 >= next_stats):
                    next_stats = t3 + stats_every
                    report.seconds = t3 - started
                    on_stats(report)
        except KeyboardInterrupt as err:  # Ctrl-C (or SIGTERM, made an interrupt by the CLI): how a live run stops
            report.stopped = "terminated" if isinstance(err, Terminated) else "interrupted"
    except BaseException:
        with _no_interrupt():
            capture.stop()
            try:
                _close_all(outputs)
            except Exception:  # the error on its way says more
                log.debug("closing the outputs after an error failed too", exc_info=True)
        raise
    with _no_interrupt():
        capture.stop()
        _close_all(outputs)
    report.seconds = (clock() - started) if started is not None else 0.0
    report.frames_in = capture.frames
    report.dropped = capture.frames - report.frames_out
    report.fault = capture.fault
    if capture.fault and report.stopped not in ("interrupted", "terminated"):
        report.stopped = "fault"
    return report


def _close_all(outputs: Sequence[Any]) -> None:
    """Close every output; the first failure is raised once all are closed (a window or a server left open
    would outlive the run)."""
    first: BaseException | None = None
    for out in outputs:
        try:
            out.close()
        except Exception as err:
            first = first or err
    if first is not None:
        raise first
