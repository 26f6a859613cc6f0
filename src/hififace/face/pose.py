"""Head pose from 3DMM coefficients, and several source photos weighted by how close their pose is to a target's
(``--source-weighting pose`` / ``nearest``), smoothly across the frames of a video.

Pose: Deep3DFaceRecon's three angles (coefficients 224:227, radians, rotations about x, y, z composed Rz Ry Rx,
see :func:`hififace.models.frozen.bfm.rotation_matrix`), given here in degrees as (yaw, pitch, roll):

- yaw (about the vertical axis, coefficient 225): positive turns the nose towards the image's right;
- pitch (about the horizontal axis, coefficient 224): positive tilts the nose down (the face looks down);
- roll (about the viewing axis, coefficient 226): positive turns the head counter-clockwise on screen.

Closeness of two poses is the angle between the directions the two faces point (yaw and pitch): roll is an in-plane
turn that the face alignment removes from every crop, so it says nothing about which source photo shows the face
from the target's side. Both poses must come from the same network on the same crops (the swap model's ReconNet on
its aligned crops, :meth:`hififace.HifiFace.analyse`).

Weights (:func:`pose_weights`): ``mean`` is today's plain mean; ``pose`` a softmax of minus the angular distance
over a temperature (:data:`POSE_TEMPERATURE` degrees: a source that many degrees further from the target's pose
gets e^-1 = 0.37 times the weight); ``nearest`` all weight on the closest source. The weighted identity is
:meth:`hififace.Identity.mean` of the sources (one-hot weights give the chosen source exactly).

Video (:class:`WeightSmoother`): per track, an exponential moving average of the weights with a time constant
(:data:`SMOOTH_SECONDS`), so the identity changes smoothly as the head turns: between two frames ``dt`` apart no
weight moves by more than ``1 - exp(-dt / tau)`` (0.095 at 25 frames/s).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..models.frozen.bfm import ANGLE_SLICE
from ..models.identity import Identity

#: How several sources are weighted for each target face.
WEIGHTINGS = ("mean", "pose", "nearest")
#: Softmax temperature of ``pose`` weighting, degrees of angular distance.
POSE_TEMPERATURE = 10.0
#: Time constant of :class:`WeightSmoother`, seconds.
SMOOTH_SECONDS = 0.4


def head_pose(coeffs: Any) -> np.ndarray:
    """(yaw, pitch, roll) in degrees (float64, ... x 3) from Deep3DFaceRecon coefficients (... x 257, radians)."""
    c = np.asarray(coeffs.detach().cpu().double().numpy() if hasattr(coeffs, "detach") else coeffs, np.float64)
    if c.shape[-1] != 257:
        raise ConfigError(f"head pose needs the 257 3DMM coefficients per face, got {c.shape[-1]}")
    pitch, yaw, roll = np.moveaxis(np.degrees(c[..., ANGLE_SLICE]), -1, 0)
    return np.stack([yaw, pitch, roll], -1)


def facing(pose: Any) -> np.ndarray:
    """Unit vectors (... x 3: x right, y up, z towards the camera) along which faces of these (yaw, pitch, roll)
    degrees point; roll is left out (see the module's notes)."""
    p = np.radians(np.asarray(pose, np.float64))
    yaw, pitch = p[..., 0], p[..., 1]
    return np.stack([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)], -1)


def pose_distance(a: Any, b: Any) -> np.ndarray:
    """Angle in degrees between the directions two faces point (broadcasting over leading dimensions)."""
    dot = np.sum(facing(a) * facing(b), axis=-1)
    return np.degrees(np.arccos(np.clip(dot, -1.0, 1.0)))


def pose_weights(target: Any, sources: Any, mode: str = "pose", temperature: float = POSE_TEMPERATURE,
                 prior: Sequence[float] | None = None) -> np.ndarray:
    """Weights (summing to 1) of K sources for each target face: ``target`` (3,) or (N, 3) and ``sources`` (K, 3)
    poses in degrees -> (K,) or (N, K) float64. ``prior`` (K, > 0, e.g. photo counts) multiplies the weights."""
    if mode not in WEIGHTINGS:
        raise ConfigError(f"source weighting must be one of {', '.join(WEIGHTINGS)}, got {mode!r}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"pose weighting temperature must be a positive number of degrees, got {temperature}")
    src = np.asarray(sources, np.float64).reshape(-1, 3)
    tgt = np.asarray(target, np.float64)
    single = tgt.ndim == 1
    tgt = tgt.reshape(-1, 3)
    if not (np.isfinite(src).all() and np.isfinite(tgt).all()):
        raise ConfigError("head poses must be finite numbers")
    k = len(src)
    if k == 0:
        raise ConfigError("pose weighting needs at least one source")
    logp = np.zeros(k) if prior is None else np.log(np.asarray(prior, np.float64).reshape(k))
    dist = pose_distance(tgt[:, None, :], src[None, :, :])  # N x K
    if mode == "mean":
        logits = np.broadcast_to(logp, dist.shape)
    elif mode == "pose":
        logits = logp - dist / float(temperature)
    else:
        w = np.zeros_like(dist)
        w[np.arange(len(dist)), np.argmin(dist, axis=1)] = 1.0  # ties: the first source
        return w[0] if single else w
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    w = e / e.sum(axis=1, keepdims=True)
    return w[0] if single else w


def weighted_identity(sources: Identity, weights: Any) -> Identity:
    """One identity from K source identities (one row each) and K weights: :meth:`Identity.mean`, except that
    one-hot weights return that source exactly (not re-normalised)."""
    w = np.asarray(weights, np.float64).reshape(-1)
    if len(w) != len(sources):
        raise ConfigError(f"{len(w)} weights for {len(sources)} sources")
    nonzero = np.flatnonzero(w > 0)
    if len(nonzero) == 1:
        return sources[int(nonzero[0])]
    return sources.mean(w.tolist())


def pose_matched_identity(sources: Identity, source_poses: Any, target_poses: Any, mode: str = "pose",
                          temperature: float = POSE_TEMPERATURE) -> Identity:
    """One identity per target face (N rows, in the targets' order) from K sources and their poses."""
    w = pose_weights(np.asarray(target_poses, np.float64).reshape(-1, 3), source_poses, mode, temperature)
    return Identity.cat([weighted_identity(sources, row) for row in w])


class WeightSmoother:
    """Source weights of each video track, smoothed over time: ``update(track, frame_index, weights)``.

    An exponential moving average with time constant ``seconds`` (0 = off): the weights of a track move from their
    last value towards the new ones by ``1 - exp(-dt / seconds)``, ``dt`` the time since the track's last frame.
    A new track, or a frame before the track's last (a seek), starts from the new weights.
    """

    def __init__(self, fps: float = 25.0, seconds: float = SMOOTH_SECONDS):
        if not (fps > 0 and math.isfinite(fps)):
            raise ConfigError(f"frame rate must be positive, got {fps}")
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ConfigError(f"smoothing time must be 0 or more seconds, got {seconds}")
        self.fps = float(fps)
        self.seconds = float(seconds)
        self._state: dict[Any, tuple[int, np.ndarray]] = {}

    def step(self, frames: int) -> float:
        """The largest change of any weight over ``frames`` frames."""
        if self.seconds == 0:
            return 1.0
        return 1.0 - math.exp(-frames / self.fps / self.seconds)

    def update(self, track: Any, frame_index: int, weights: Any) -> np.ndarray:
        w = np.asarray(weights, np.float64).copy()
        last = self._state.get(track)
        if last is not None and frame_index > last[0] and last[1].shape == w.shape:
            a = self.step(frame_index - last[0])
            w = last[1] + a * (w - last[1])
        self._state[track] = (int(frame_index), w)
        return w.copy()

    def forget(self, keep: Sequence[Any]) -> None:
        """Drop the tracks not in ``keep`` (those the tracker has let go)."""
        alive = set(keep)
        self._state = {k: v for k, v in self._state.items() if k in alive}
