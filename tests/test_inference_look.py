"""The options of issue 21 in the photo pipeline (FaceSwapper): --keep-mouth on the final paste alpha,
identity/3D-shape strength through Identity.toward, several sources weighted by head pose. Each changes nothing
unless given (tests/test_pinned_outputs.py pins today's outputs; here: bit-identical and no extra model pass)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_helpers import photo
from hififace import Identity
from hififace.face.mouth import MOUTH_DILATE, MOUTH_FEATHER
from hififace.face.outline import face_unit
from hififace.face.palette import CLASSES
from hififace.face.parse import FaceParser, LandmarkParser
from hififace.inference.pipeline import FaceSwapper, PoseSources
from inferkit import SAMPLES, FakeEngine, sample, tiny_model

cv2 = pytest.importorskip("cv2")

MOUTH_RGB = (90, 0, 60)  # the open mouth's dark purple: (almost) nothing else in the test photo is this colour


def _is_mouth(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb).astype(np.int16)
    return (np.abs(a - np.array(MOUTH_RGB)).max(-1) <= 8)


class MouthReader(FaceParser):
    """A stand-in parsing network that reads the pixels: the landmark parser's face, with the open mouth's dark
    pixels labelled ``mouth`` (what BiSeNet does with the inside of an open mouth)."""

    name = "stub"
    reads_pixels = True

    def parse(self, crops, landmarks=None):
        labels = LandmarkParser().parse(crops, landmarks)
        labels[_is_mouth(crops) & (labels > 0)] = CLASSES.index("mouth")
        return labels


def _open_mouth_photo():
    """Astronaut (doubled: a larger face) with a wide-open dark mouth drawn between her mouth corners, reaching about
    2 cm down (wider open than the 5-point region's 1 cm); the mouth's mask and the face unit in the photo."""
    rgb = cv2.resize(photo("astronaut.png"), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    lm = FaceSwapper(FakeEngine(), parsing="landmarks").detect(rgb)[0].landmarks
    unit = face_unit(lm)
    centre = (lm[3] + lm[4]) / 2 + np.array([0.0, 0.08 * unit])
    half_w = 0.4 * float(np.linalg.norm(lm[4] - lm[3]))
    mouth = np.zeros(rgb.shape[:2], np.uint8)
    cv2.ellipse(mouth, (int(centre[0]), int(centre[1])), (int(half_w), int(0.1 * unit)), 0, 0, 360, 1, -1)
    rgb[mouth > 0] = MOUTH_RGB
    return rgb, mouth > 0, unit


def _swap(rgb, **options):
    swapper = FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0, **options)
    swapper._parser = MouthReader()
    source = Identity(torch.zeros(1, 80), torch.nn.functional.normalize(torch.ones(1, 512), dim=1))
    return swapper.swap(source, rgb).image


def test_keep_mouth_keeps_the_open_mouth_of_the_target_and_changes_nothing_else():
    rgb, mouth, unit = _open_mouth_photo()
    plain, kept = _swap(rgb), _swap(rgb, keep_mouth=True)
    inside = cv2.erode(mouth.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert inside.sum() > 200
    assert (plain[inside] != rgb[inside]).any(-1).all()  # without the option the mouth is swapped (inverted)
    assert (kept[inside] == rgb[inside]).all()  # with it: the target's own pixels, all of the open mouth
    reach = int(np.ceil((MOUTH_DILATE + 3 * MOUTH_FEATHER) * unit)) + 4  # dilation + the Gaussian's reach + warp
    near = cv2.dilate(mouth.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    assert (kept[~near] == plain[~near]).all()  # everything else exactly as without the option
    assert (kept != plain).any(-1).sum() >= mouth.sum() * 0.9


def test_keep_mouth_without_a_pixel_parser_keeps_the_five_point_region():
    """--parsing landmarks reads no pixels: the 5-point region (both lips and a mouth open about 1 cm) is kept."""
    rgb, mouth, unit = _open_mouth_photo()
    swapper = FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0, keep_mouth=True)
    source = Identity(torch.zeros(1, 80), torch.nn.functional.normalize(torch.ones(1, 512), dim=1))
    kept = swapper.swap(source, rgb).image
    plain = FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0).swap(source, rgb).image
    lm = swapper.detect(rgb)[0].landmarks
    x, y = np.round((lm[3] + lm[4]) / 2).astype(int)
    assert (kept[y - 2 : y + 3, x - 2 : x + 3] == rgb[y - 2 : y + 3, x - 2 : x + 3]).all()
    assert (plain[y, x] != rgb[y, x]).any()
    eyes = np.round(lm[:2]).astype(int)
    for ex, ey in eyes:  # far from the mouth: as without the option
        assert (kept[ey - 3 : ey + 4, ex - 3 : ex + 4] == plain[ey - 3 : ey + 4, ex - 3 : ex + 4]).all()


# ---------------------------------------------------------------------------------------------- strength
@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_strength_one_is_todays_swap_bit_for_bit_and_runs_nothing_more(model, monkeypatch):
    target, source = sample("astronaut"), sample("grace_hopper")
    today = FaceSwapper(model).swap(source, target).image
    swapper = FaceSwapper(model, identity_strength=1.0, shape_strength=1.0, source_weighting="pose")

    def no(*a, **k):
        raise AssertionError("analyse ran with strength 1 and one source")

    monkeypatch.setattr(swapper.engine, "analyse", no)
    assert np.array_equal(swapper.swap(swapper.source(source), target).image, today)


def test_strength_zero_is_the_targets_self_reconstruction(model):
    target, source = sample("astronaut"), sample("grace_hopper")
    plain = FaceSwapper(model)
    own = plain.swap(model.identity(target), target).image
    zero = FaceSwapper(model, identity_strength=0.0, shape_strength=0.0).swap(source, target).image
    assert np.array_equal(zero, own)
    half = FaceSwapper(model, identity_strength=0.5, shape_strength=0.0).swap(source, target).image
    assert not np.array_equal(half, own)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_strength_out_of_range_is_one_config_error(model, value):
    from hififace.errors import ConfigError

    with pytest.raises(ConfigError, match="use a number from 0 to 1"):
        FaceSwapper(model, shape_strength=value)


# ---------------------------------------------------------------------------------------------- pose-matched
class PoseEngine(FakeEngine):
    """FakeEngine with ``analyse``: the "yaw" of a crop is how much brighter its left half is than its right (so a
    mirrored photo has the opposite yaw); records the identity of each swap."""

    def __init__(self):
        super().__init__("pose")
        self.seen: list[Identity] = []

    def analyse(self, crops):
        ident = self.identity(crops)
        half = crops.shape[-1] // 2
        yaw = (crops[..., :half].mean((1, 2, 3)) - crops[..., half:].mean((1, 2, 3))) * 3.0  # radians
        coeffs = torch.zeros(len(crops), 257)
        coeffs[:, :80] = ident.c_id
        coeffs[:, 225] = yaw
        return ident.v_id, coeffs

    def swap(self, identity, crops):
        self.seen.append(identity)
        return super().swap(identity, crops)


@pytest.fixture
def posed():
    """A face crop lit from one side and its mirror image: two sources whose yaws are opposite."""
    crop = sample("grace_hopper").copy()
    crop[:, :128] = np.clip(crop[:, :128].astype(int) + 60, 0, 255).astype(np.uint8)
    return crop, np.ascontiguousarray(crop[:, ::-1])


def test_nearest_takes_the_source_whose_pose_is_closest(posed):
    a, b = posed
    engine = PoseEngine()
    swapper = FaceSwapper(engine, source_weighting="nearest")
    sources = swapper.source(a, b)
    assert isinstance(sources, PoseSources) and sources.poses[0, 0] * sources.poses[1, 0] < 0  # yaws flip
    for target, winner in ((a, 0), (b, 1), (np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8), 0)):
        swapper.swap(sources, target)
        used = engine.seen[-1]
        assert torch.equal(used.v_id, sources.identity.v_id[winner : winner + 1])
        assert torch.equal(used.c_id, sources.identity.c_id[winner : winner + 1])


def test_pose_weights_favour_the_closer_source_and_mean_stays_todays(posed):
    a, b = posed
    swapper = FaceSwapper(PoseEngine(), source_weighting="pose")
    fid = swapper.face_identities(swapper.source(a, b), np.stack([a, b]))
    assert fid.weights[0, 0] > 0.5 and fid.weights[1, 1] > 0.5
    mean = FaceSwapper(PoseEngine())  # mean: the plain mean identity, as before
    got, want = mean.source(a, b), mean.identity(a, b)
    assert isinstance(got, Identity) and torch.equal(got.v_id, want.v_id) and torch.equal(got.c_id, want.c_id)
    assert mean.face_identities(got, np.stack([a, b])).swap is got  # nothing computed


def test_video_weights_follow_the_head_smoothly_per_track(posed):
    """In a video (tracks, frame numbers, a WeightSmoother) `nearest` crossfades: when the head turns from source
    a's pose to b's, the weights of that track move by at most the smoother's step per frame."""
    from hififace.face.pose import WeightSmoother

    a, b = posed
    swapper = FaceSwapper(PoseEngine(), source_weighting="nearest")
    sources, smoother = swapper.source(a, b), WeightSmoother(25.0)
    first = swapper.face_identities(sources, a[None], tracks=[7], frames=[0], smoother=smoother)
    assert first.weights.tolist() == [[1.0, 0.0]] and torch.equal(first.swap.v_id, sources.identity.v_id[:1])
    turned = swapper.face_identities(sources, np.stack([b, b]), tracks=[7, 8], frames=[1, 1], smoother=smoother)
    step = smoother.step(1)
    assert turned.weights[0] == pytest.approx([1 - step, step])  # track 7 moves one step toward b
    assert turned.weights[1].tolist() == [0.0, 1.0]  # a new track starts from its own weights


def test_pose_weighting_refuses_an_identity_file_or_an_engine_without_analyse(posed, tmp_path):
    from hififace.errors import ConfigError

    a, b = posed
    swapper = FaceSwapper(PoseEngine(), source_weighting="pose")
    file = swapper.save_identity(tmp_path / "me.safetensors", swapper.identity(a))
    with pytest.raises(ConfigError, match="me.safetensors: an identity file holds no head pose"):
        swapper.source(a, file)
    with pytest.raises(ConfigError, match="analyse"):
        FaceSwapper(FakeEngine(), source_weighting="nearest").source(a, b)


def test_grid_keeps_the_mouth_and_strength_one_is_todays(model):
    from hififace.face.align import template_points
    from hififace.inference.grid import swap_grid

    src, tgt = [sample("grace_hopper")], [sample("astronaut")]
    today = swap_grid(model, src, tgt, identity_strength=1.0, shape_strength=1.0)[0][0]
    kept = swap_grid(model, src, tgt, keep_mouth=True)[0][0]
    lm = template_points(model.config.align, 256)
    x, y = np.round((lm[3] + lm[4]) / 2).astype(int)
    assert (kept[y, x] == tgt[0][y, x]).all() and (kept[40, 128] == today[40, 128]).all()
    zero = swap_grid(model, src, tgt, identity_strength=0.0, shape_strength=0.0)[0][0]
    assert np.array_equal(zero, model.swap(model.identity(tgt[0]), tgt[0]))
    assert not np.array_equal(zero, today)


def test_weighting_choices_of_the_cli_are_the_pose_modules():
    from hififace.cli import _common
    from hififace.face import pose

    assert _common.WEIGHTINGS == pose.WEIGHTINGS and _common.POSE_TEMPERATURE == pose.POSE_TEMPERATURE
    assert SAMPLES.is_dir()
