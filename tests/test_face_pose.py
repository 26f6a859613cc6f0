"""Pose-matched sources (hififace.face.pose): head pose from 3DMM coefficients, weights by pose closeness, and
their smoothing over video frames; sources of known pose are synthetic coefficient vectors with set angles."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hififace import Identity
from hififace.errors import ConfigError
from hififace.face.pose import (POSE_TEMPERATURE, WeightSmoother, facing, head_pose, pose_distance,
                                pose_matched_identity, pose_weights, weighted_identity)
from hififace.models.frozen.bfm import rotation_matrix


def coeffs(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, seed: int = 0) -> np.ndarray:
    """A 257-vector with random shape/expression/texture and the given angles (degrees) in Deep3DFaceRecon's slots."""
    c = np.random.default_rng(seed).normal(0.0, 0.3, 257)
    c[224:227] = np.radians([pitch, yaw, roll])  # rotations about x, y, z
    return c


def test_head_pose_reads_the_angles_in_degrees_as_yaw_pitch_roll():
    got = head_pose(np.stack([coeffs(30, -10, 5), coeffs(-45, 20, 0)]))
    np.testing.assert_allclose(got, [[30, -10, 5], [-45, 20, 0]], atol=1e-12)
    torch_in = head_pose(torch.from_numpy(coeffs(12, 3, -4)).float()[None])
    np.testing.assert_allclose(torch_in, [[12, 3, -4]], atol=1e-5)
    with pytest.raises(ConfigError, match="257"):
        head_pose(np.zeros((2, 80)))


def test_signs_follow_the_3dmm_rotation():
    """facing() is where Deep3DFaceRecon's rotation sends the face's forward axis (x right, y up, z to the camera):
    positive yaw to the image's right, positive pitch down, positive roll counter-clockwise on screen."""
    forward, up = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    for yaw, pitch in ((30, 0), (0, 20), (-25, -15), (60, 30)):
        c = torch.from_numpy(coeffs(yaw, pitch))[None]
        rotated = (forward @ rotation_matrix(c[:, 224:227])[0]).numpy()[0]
        np.testing.assert_allclose(facing(head_pose(c)[0]), rotated, atol=1e-12)
    assert facing([30, 0, 0])[0] > 0 and facing([0, 20, 0])[1] < 0
    top = (up @ rotation_matrix(torch.from_numpy(coeffs(roll=20))[None][:, 224:227])[0]).numpy()[0]
    assert top[0] < 0  # the top of the head moves to the image's left: counter-clockwise


def test_pose_distance_is_the_angle_between_facing_directions_without_roll():
    assert pose_distance([10, 0, 0], [40, 0, 0]) == pytest.approx(30.0)
    assert pose_distance([0, -10, 0], [0, 15, 0]) == pytest.approx(25.0)
    assert pose_distance([20, 5, 0], [20, 5, 35]) == pytest.approx(0.0, abs=1e-6)  # roll: the alignment removes it
    assert pose_distance([20, 5, 0], [-30, 10, 0]) == pytest.approx(pose_distance([-30, 10, 0], [20, 5, 0]))
    assert pose_distance([90, 0, 0], [-90, 0, 0]) == pytest.approx(180.0)


SOURCES = np.array([[-40.0, 0, 0], [0.0, 5, 0], [40.0, 0, 0]])  # left profile-ish, frontal, right


@pytest.mark.parametrize("target, winner", [([35, 0, 0], 2), ([-30, 5, 0], 0), ([3, 2, 0], 1), ([15, 0, 0], 1),
                                            ([25, 0, 0], 2)])
def test_the_source_closest_in_pose_wins(target, winner):
    soft = pose_weights(target, SOURCES, "pose")
    assert soft.shape == (3,) and soft.sum() == pytest.approx(1.0) and (soft > 0).all()
    assert int(np.argmax(soft)) == winner
    hard = pose_weights(target, SOURCES, "nearest")
    np.testing.assert_array_equal(hard, np.eye(3)[winner])
    np.testing.assert_allclose(pose_weights(target, SOURCES, "mean"), [1 / 3] * 3)
    # a mirrored target (yaw and roll flip sign) picks the mirrored source
    mirrored = pose_weights(np.asarray(target) * [-1, 1, -1], SOURCES * [-1, 1, -1], "pose")
    np.testing.assert_allclose(mirrored, soft, atol=1e-12)


def test_temperature_and_prior():
    t = [20.0, 0, 0]
    cold, warm, hot = (pose_weights(t, SOURCES, "pose", temperature=x) for x in (2.0, POSE_TEMPERATURE, 200.0))
    assert cold.max() > warm.max() > hot.max() and hot.max() < 0.4  # hotter: flatter
    # 10 degrees further away: e^-1 of the weight
    two = pose_weights([0, 0, 0], [[10, 0, 0], [20, 0, 0]], "pose")
    assert two[1] / two[0] == pytest.approx(np.exp(-1.0))
    # a prior (photo counts) multiplies
    np.testing.assert_allclose(pose_weights([0, 0, 0], [[10, 0, 0], [20, 0, 0]], "pose", prior=[1, np.e]), [0.5, 0.5])
    many = pose_weights([[35, 0, 0], [-30, 0, 0]], SOURCES, "nearest")
    np.testing.assert_array_equal(many, [[0, 0, 1], [1, 0, 0]])
    for bad in (dict(mode="closest"), dict(temperature=0.0), dict(temperature=float("nan"))):
        with pytest.raises(ConfigError):
            pose_weights(t, SOURCES, **bad)
    with pytest.raises(ConfigError, match="finite"):
        pose_weights([np.nan, 0, 0], SOURCES)


def _sources(k: int = 3) -> Identity:
    g = torch.Generator().manual_seed(0)
    return Identity(torch.randn(k, 80, generator=g), F.normalize(torch.randn(k, 512, generator=g), dim=1))


def test_weighted_identity_picks_exactly_or_mixes_as_mean():
    src = _sources()
    pick = weighted_identity(src, [0.0, 0.0, 1.0])
    assert torch.equal(pick.c_id, src.c_id[2:]) and torch.equal(pick.v_id, src.v_id[2:])
    w = [0.2, 0.5, 0.3]
    mixed = weighted_identity(src, w)
    ref = src.mean(w)
    assert torch.equal(mixed.c_id, ref.c_id) and torch.equal(mixed.v_id, ref.v_id)
    per_face = pose_matched_identity(src, SOURCES, [[35, 0, 0], [-30, 0, 0], [0, 0, 0]], "nearest")
    assert len(per_face) == 3
    assert torch.equal(per_face.v_id, src.v_id[[2, 0, 1]]) and torch.equal(per_face.c_id, src.c_id[[2, 0, 1]])
    with pytest.raises(ConfigError, match="2 weights for 3"):
        weighted_identity(src, [0.5, 0.5])


def test_the_smoother_bounds_the_change_per_frame_and_follows_the_head():
    fps = 25.0
    smoother = WeightSmoother(fps=fps)
    bound = smoother.step(1)
    assert bound == pytest.approx(1 - np.exp(-1 / fps / 0.4))
    yaws = np.concatenate([np.full(10, -40.0), np.linspace(-40, 40, 20), np.full(40, 40.0)])  # a fast head turn
    raw = [pose_weights([y, 0, 0], SOURCES, "nearest") for y in yaws]
    out = np.array([smoother.update("a", i, w) for i, w in enumerate(raw)])
    np.testing.assert_allclose(out.sum(1), 1.0)
    steps = np.abs(np.diff(out, axis=0)).max(1)
    assert steps.max() <= bound + 1e-12
    assert np.abs(np.diff(np.array(raw), axis=0)).max() == 1.0  # unsmoothed, the pick flips in one frame
    np.testing.assert_array_equal(out[0], raw[0])  # a new track starts where it is
    assert out[-1][2] > 0.95 and int(np.argmax(out[25])) in (1, 2)  # and follows the head
    # a gap of several frames allows the change of that many frames; a seek backwards restarts
    late = smoother.update("a", 200, raw[0])
    assert late[0] > 0.99
    np.testing.assert_array_equal(smoother.update("a", 5, raw[-1]), raw[-1])
    # tracks are independent and can be forgotten
    np.testing.assert_array_equal(smoother.update("b", 6, raw[0]), raw[0])
    smoother.forget(["b"])
    np.testing.assert_array_equal(smoother.update("a", 7, raw[0]), raw[0])
    off = WeightSmoother(fps=fps, seconds=0.0)
    off.update("a", 0, raw[0])
    np.testing.assert_array_equal(off.update("a", 1, raw[-1]), raw[-1])
    for bad in (dict(fps=0.0), dict(seconds=-1.0)):
        with pytest.raises(ConfigError):
            WeightSmoother(**bad)
