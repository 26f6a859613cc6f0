"""Faces across video frames: tracks by box overlap, and landmark smoothing so aligned crops do not jitter.

:class:`FaceTracker` gives each face a track id that stays with the person while their boxes overlap from frame to
frame (greedy IoU matching against each track's box moved on at its recent velocity, so faces that pass each other
keep their ids; a track survives ``max_lost`` frames without a detection). Each track smooths its 5
landmarks with a One Euro filter (Casiez et al., CHI 2012): strong smoothing while the face is still, little lag
when it moves. Speeds are measured in face sizes per second, so the same settings fit small and large faces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .detect import Face, box_iou


class OneEuroFilter:
    """One Euro filter over an array (all elements share the timing); ``__call__(x, t) -> smoothed x``.

    ``min_cutoff`` (Hz) sets the smoothing at rest, ``beta`` how fast the cutoff rises with speed (speed in units of
    ``scale`` per second), ``d_cutoff`` (Hz) the smoothing of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 4.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx) / max(scale, 1e-6)
        a = self._alpha(cutoff, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = float(t)
        return self.x.copy()


@dataclass
class Track:
    """One person across frames. ``landmarks`` are the smoothed 5 points of the last frame they were seen in."""

    id: int
    box: np.ndarray
    landmarks: np.ndarray
    first_frame: int
    last_frame: int
    filter: OneEuroFilter | None = field(default=None, repr=False)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per frame

    def predicted(self, frame_index: int) -> np.ndarray:
        """Where the box should be at ``frame_index`` at constant velocity (tells crossing faces apart)."""
        return self.box + self.velocity * (frame_index - self.last_frame)

    @property
    def size(self) -> float:
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


class FaceTracker:
    """Tracks faces frame by frame: ``update(frame_index, faces) -> [(track, face), ...]`` for that frame.

    Args:
        fps: frame rate (for the filter's timing).
        iou_threshold: least box overlap that continues a track.
        max_lost: frames a track survives without a matching detection.
        smooth: landmark smoothing strength (0 = off; 1 = default; larger = steadier, more lag).
    """

    def __init__(self, fps: float = 25.0, iou_threshold: float = 0.3, max_lost: int = 12, smooth: float = 1.0):
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.iou_threshold = float(iou_threshold)
        self.max_lost = int(max_lost)
        self.smooth = float(smooth)
        self.tracks: list[Track] = []
        self._next_id = 0

    def _new_filter(self) -> OneEuroFilter | None:
        return OneEuroFilter(min_cutoff=1.0 / self.smooth, beta=4.0 / self.smooth) if self.smooth > 0 else None

    def update(self, frame_index: int, faces: list[Face]) -> list[tuple[Track, Face]]:
        """Match ``faces`` (one frame's detections) to tracks; returns the matched/new tracks with their face, in the
        faces' order (left to right). Each face's ``landmarks`` are replaced by the smoothed ones."""
        self.tracks = [t for t in self.tracks if frame_index - t.last_frame <= self.max_lost]
        assigned: dict[int, Track] = {}
        if self.tracks and faces:
            iou = box_iou(np.stack([t.predicted(frame_index) for t in self.tracks]), np.stack([f.box for f in faces]))
            while True:
                ti, fi = np.unravel_index(int(np.argmax(iou)), iou.shape)
                if iou[ti, fi] < self.iou_threshold:
                    break
                assigned[int(fi)] = self.tracks[int(ti)]
                iou[ti, :] = -1.0
                iou[:, fi] = -1.0
        out = []
        t = frame_index / self.fps
        for i, face in enumerate(faces):
            track = assigned.get(i)
            if track is None:
                track = Track(self._next_id, face.box.astype(np.float64), face.landmarks.astype(np.float64),
                              frame_index, frame_index, self._new_filter())
                self._next_id += 1
                self.tracks.append(track)
            box = face.box.astype(np.float64)
            if track.last_frame < frame_index:
                step = (box - track.box) / (frame_index - track.last_frame)
                track.velocity = step if track.first_frame == track.last_frame else 0.5 * (track.velocity + step)
            track.box = box
            track.last_frame = frame_index
            lm = face.landmarks.astype(np.float64)
            if track.filter is not None:
                lm = track.filter(lm, t, scale=max(face.size, 1.0))
            track.landmarks = lm
            face.landmarks = lm.astype(np.float32)
            out.append((track, face))
        return out

    def near(self, center: np.ndarray, size: float, exclude: set[int]) -> Track | None:
        """The live track closest to ``center`` within ``size`` pixels (for picking a lost person up again)."""
        best, dist = None, float(size)
        for tr in self.tracks:
            if tr.id in exclude:
                continue
            d = float(np.linalg.norm(tr.center - center))
            if d <= dist:
                best, dist = tr, d
        return best
