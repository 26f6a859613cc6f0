"""Quality report building blocks (hififace.metrics.quality) on known answers: identical crops score 1 and 0, a
still video has no flicker, a flickering one has its frames listed; the JSON and PNG writers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hififace import Identity
from hififace.errors import ConfigError
from hififace.metrics.identity import IdentityModel
from hififace.metrics.quality import (FORMAT, MEASURES, FlickerMeter, QualityRecorder, composite, flicker_scores,
                                      plot_path, region_change, write_quality_report)
from inferkit import leftovers, tiny_model

S = 256


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _crops(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


class PooledPixels(IdentityModel):
    """An 'independent' identity model for tests: the normalised 8 x 8 pooled pixels of the crop."""

    name = "pooled pixels (test)"
    key = "pooled"

    def __init__(self):
        self.calls = 0

    def embed(self, images, landmarks):
        self.calls += 1
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        v = F.adaptive_avg_pool2d(x, 8).flatten(1)
        return (v - v.mean(1, keepdim=True)).double().numpy()


def test_identical_crops_give_similarity_one_and_zero_errors(model):
    crops = _crops(2, 0)
    recorder = QualityRecorder(model.analyse, "tiny", independent=PooledPixels())
    recorder.set_source(model.identity(crops[0]), images=[crops[0]], landmarks=[np.zeros((5, 2))])
    # the "swap" returned the source face itself onto a target that is that face: nothing to tell them apart
    rows = recorder.add(0, [0], crops[:1], crops[:1], np.full((1, S, S), 0.7, np.float32), np.zeros((1, 5, 2)))
    r = rows[0]
    assert r["id_similarity"] == pytest.approx(1.0, abs=1e-6)
    assert r["id_similarity_independent"] == pytest.approx(1.0, abs=1e-9)
    assert r["pose_error"] == pytest.approx(0.0, abs=1e-4) and r["expression_error"] == pytest.approx(0.0, abs=1e-4)
    assert r["shape_error"] == pytest.approx(0.0, abs=1e-4) and r["flicker"] is None
    # another face swapped in: lower similarity, non-zero errors, each measure on the composite
    rows = recorder.add(0, [1], crops[1:], crops[:1], np.ones((1, S, S), np.float32), np.zeros((1, 5, 2)))
    assert rows[0]["pose_error"] > 0 and rows[0]["expression_error"] > 0
    rows = recorder.add(0, [2], crops[1:], crops[:1], np.zeros((1, S, S), np.float32), np.zeros((1, 5, 2)))
    assert rows[0]["id_similarity"] < 0.999 and rows[0]["shape_error"] > 0  # alpha 0: the output is the target
    assert rows[0]["pose_error"] == pytest.approx(0.0, abs=1e-4)
    report = recorder.report()
    assert [f["face"] for f in report.faces] == [0, 1, 2] and report.kind == "photo"
    assert "optimistic" in report.models["id_similarity"] and report.models["id_similarity_independent"].startswith(
        "pooled")
    assert report.skipped == {"flicker": "a photo has no frames"}


def test_composite_and_region_change():
    t, s = np.full((1, 4, 4, 3), 100, np.uint8), np.full((1, 4, 4, 3), 200, np.uint8)
    a = np.zeros((1, 4, 4), np.float32)
    a[0, :2] = 1.0
    a[0, 2] = 0.25
    out = composite(t, s, a)
    assert (out[0, :2] == 200).all() and (out[0, 2] == 125).all() and (out[0, 3] == 100).all()
    assert region_change(t[0], s[0]) == 100.0
    assert region_change(t[0], out[0], a[0]) == pytest.approx((100 * 8 + 25 * 0.25 * 4) / (8 + 1))
    assert region_change(t[0], s[0], np.zeros((4, 4))) is None


def _moving_sequence(n: int = 20, seed: int = 1) -> np.ndarray:
    """A target whose face moves a little every frame (a few grey levels of change per frame)."""
    base = np.random.default_rng(seed).integers(0, 256, (S + n, S + n, 3)).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base.astype(np.float32), (0, 0), 4)
    base = np.clip((base - base.mean()) * 40.0 / base.std() + 128.0, 0, 255).astype(np.uint8)  # std 40 grey levels
    return np.stack([base[t : t + S, t : t + S] for t in range(n)])


def test_a_still_video_has_no_flicker_and_a_faithful_one_about_one():
    still = np.repeat(_crops(1, 2), 12, axis=0)
    assert flicker_scores(still, still) == [None] + [0.0] * 11
    moving = _moving_sequence()
    scores = flicker_scores(moving, moving)
    assert scores[0] is None and all(s == pytest.approx(1.0) for s in scores[1:])


def test_a_flickering_sequence_has_its_frames_listed():
    targets = _moving_sequence(20)
    outputs = targets.copy()
    for t in (5, 12):  # two frames of the output jump in brightness
        outputs[t] = np.clip(outputs[t].astype(int) + 60, 0, 255).astype(np.uint8)

    def analyse(x):  # the nets are not what this test is about
        n = x.shape[0]
        return F.normalize(torch.ones(n, 512), dim=1), torch.zeros(n, 257)

    recorder = QualityRecorder(analyse, kind="video", fps=25.0)
    recorder.set_source(Identity(torch.zeros(1, 80), F.normalize(torch.ones(1, 512), dim=1)))
    alpha = np.ones((1, S, S), np.float32)
    for t in range(20):
        recorder.add(t, [7], targets[t : t + 1], outputs[t : t + 1], alpha)
    report = recorder.report()
    flick = [r["flicker"] for r in report.faces]
    assert flick[0] is None and max(flick[k] for k in (1, 2, 3, 4, 8, 9, 10, 11, 15, 16)) == pytest.approx(1.0)
    data = report.to_json()
    assert data["flagged_frames"] == [5, 6, 12, 13]  # into the jump and back out of it
    assert all(f["face"] == 7 and f["why"][0].startswith("flicker ") for f in data["flagged"])
    assert data["summary"]["flicker"]["n"] == 19
    # a track that misses a frame starts over: no flicker across the gap
    meter = FlickerMeter()
    assert meter.update("a", 0, outputs[0], targets[0]) is None
    assert meter.update("a", 2, outputs[2], targets[2]) is None
    assert meter.update("a", 3, outputs[3], targets[3]) == pytest.approx(1.0)


def test_json_and_png_are_written_atomically_with_the_documented_keys(tmp_path):
    recorder = QualityRecorder(lambda x: (F.normalize(torch.ones(len(x), 512), dim=1), torch.zeros(len(x), 257)),
                               "tiny", kind="video", fps=30.0, thresholds={"id_similarity": 1.5})
    recorder.set_source(Identity(torch.zeros(1, 80), F.normalize(torch.ones(1, 512), dim=1)))
    seq = _moving_sequence(4)
    for t in range(4):
        recorder.add(t, [0, 1], np.stack([seq[t], seq[t]]), np.stack([seq[t], seq[t]]), np.ones((2, S, S), np.float32))
    out = tmp_path / "report.json"
    written = write_quality_report(out, recorder.report(), output="out.mp4")
    assert written == [out, tmp_path / "report.png"] and plot_path(tmp_path / "r.txt").name == "r.txt.png"
    assert leftovers(tmp_path) == []
    data = json.loads(out.read_text())
    assert data["format"] == FORMAT and data["kind"] == "video" and data["fps"] == 30.0 and data["output"] == "out.mp4"
    assert set(data) >= {"faces", "summary", "thresholds", "flagged", "flagged_frames", "models", "units",
                         "higher_is_better", "skipped", "notes"}
    assert len(data["faces"]) == 8 and set(data["faces"][0]) == {"frame", "face", *MEASURES}
    assert data["flagged_frames"] == [0, 1, 2, 3]  # the threshold of 1.5 flags every face
    assert data["skipped"]["id_similarity_independent"].startswith("no independent")
    with Image.open(tmp_path / "report.png") as img:
        assert img.format == "PNG" and img.width == 640 and img.height > 300


def test_bad_uses_are_one_clear_error():
    with pytest.raises(ConfigError, match="unknown report threshold"):
        QualityRecorder(lambda x: x, thresholds={"sharpness": 1.0})
    with pytest.raises(ConfigError, match="photo or video"):
        QualityRecorder(lambda x: x, kind="gif")
    with pytest.raises(ConfigError, match="set the source"):
        QualityRecorder(lambda x: x).add(0, [0], _crops(1, 0), _crops(1, 0), np.ones((1, S, S)))
    rec = QualityRecorder(lambda x: x, independent=PooledPixels())
    rec.set_source(Identity(torch.zeros(1, 80), F.normalize(torch.ones(1, 512), dim=1)))  # no photos: an id file
    assert "identity file" in rec.report().skipped["id_similarity_independent"]
