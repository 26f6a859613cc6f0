"""Metric maths on cases with known answers, the FID Inception's weight format, pairs.csv, caches, FF++ sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hififace.errors import ConfigError, InputImageError, WeightsError
from hififace.metrics import image as pix
from hififace.metrics import realism, threedmm
from hififace.metrics.cache import FeatureCache
from hififace.metrics.ffpp import sample_indices
from hififace.metrics.identity import cosine, retrieval
from hififace.metrics.pairs import read_pairs


def _rand_image(seed: int, size=(48, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- PSNR / SSIM
def test_psnr_by_hand():
    a = _rand_image(0).astype(np.int64)
    a = np.clip(a, 20, 235)  # room for a brightness shift without clipping
    shifted = (a + 10).astype(np.uint8)
    # every pixel off by 10 grey levels: MSE = (10/255)^2, PSNR = 20 log10(255/10)
    assert pix.psnr(a.astype(np.uint8), shifted) == pytest.approx(20 * math.log10(25.5), abs=1e-9)
    rolled = np.roll(a.astype(np.uint8), 1, axis=1)  # a one-pixel spatial shift
    mse = np.mean(((a - np.roll(a, 1, axis=1)) / 255.0) ** 2)
    assert pix.psnr(a.astype(np.uint8), rolled) == pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
    assert pix.psnr(a.astype(np.uint8), a.astype(np.uint8)) == pix.PSNR_MAX  # identical: the documented cap


def test_ssim_known_values():
    a = _rand_image(1)
    assert pix.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # constant images: no variance, so SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    m1, m2 = 100 / 255, 140 / 255
    c1 = pix.SSIM_K1**2
    x, y = np.full((32, 32, 3), 100, np.uint8), np.full((32, 32, 3), 140, np.uint8)
    assert pix.ssim(x, y) == pytest.approx((2 * m1 * m2 + c1) / (m1**2 + m2**2 + c1), rel=1e-9)
    # against the definition written out window by window (Gaussian weights, population statistics)
    x, y = _rand_image(2, (15, 13)) / 255.0, _rand_image(3, (15, 13)) / 255.0
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c2 = pix.SSIM_K2**2
    vals = []
    for ch in range(3):
        for i in range(15 - 10):
            for j in range(13 - 10):
                p, q = x[i:i + 11, j:j + 11, ch], y[i:i + 11, j:j + 11, ch]
                mp, mq = (w * p).sum(), (w * q).sum()
                vp, vq, cov = (w * (p - mp) ** 2).sum(), (w * (q - mq) ** 2).sum(), (w * (p - mp) * (q - mq)).sum()
                vals.append((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    assert pix.ssim(torch.from_numpy(x).permute(2, 0, 1), torch.from_numpy(y).permute(2, 0, 1)) == pytest.approx(
        float(np.mean(vals)), abs=1e-12)
    with pytest.raises(ValueError):
        pix.ssim(a, a[:-1])


# ---------------------------------------------------------------------------------------------- FID / KID
def test_fid_known_answers():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(300, 8))
    assert realism.fid(f, f) == pytest.approx(0.0, abs=1e-9)  # a set with itself
    # equal covariances: FID is the squared distance of the means
    shift = np.arange(8) * 0.1
    assert realism.fid(f, f + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # diagonal Gaussians: sum (mu_a - mu_b)^2 + (s_a - s_b)^2
    a = realism.Gaussian(np.zeros(3), np.diag([1.0, 4.0, 9.0]), 10)
    b = realism.Gaussian(np.ones(3), np.diag([4.0, 4.0, 1.0]), 10)
    assert realism.frechet_distance(a, b) == pytest.approx(3 + 1 + 0 + 4, rel=1e-12)
    # the feature route (no D x D square root) equals the statistics route, with fewer or more samples than dims
    for n, m, dead in ((7, 9, False), (10, 300, False), (300, 40, False), (60, 300, True)):
        x, y = rng.normal(size=(n, 24)), rng.normal(size=(m, 24)) * 1.3 + 0.2
        if dead:  # a feature that never varies: a singular covariance (Cholesky fails, QR takes over)
            x[:, 3] = 0.0
        assert realism.fid(x, y) == pytest.approx(
            realism.frechet_distance(feature_stats(x), feature_stats(y)), rel=1e-6)
        # (not closer: with N < D the statistics route takes square roots of eigenvalues that are zero up to rounding)
    # rank-deficient covariances (fewer samples than dimensions) stay finite and >= 0
    few = rng.normal(size=(5, 64))
    assert realism.fid(few, few) == pytest.approx(0.0, abs=1e-8)
    assert realism.fid(few, rng.normal(size=(5, 64))) > 1.0
    with pytest.raises(ValueError):
        realism.fid(f[:1], f)


def test_kid_self_zero_and_shift_positive(monkeypatch):
    rng = np.random.default_rng(1)
    f, g = rng.normal(size=(120, 16)), rng.normal(size=(120, 16))
    same, _ = realism.kid(f, g, subsets=20, subset_size=50)  # two samples of one distribution: unbiased, so ~0
    far, spread = realism.kid(f, g + 0.5, subsets=20, subset_size=50)
    assert abs(same) < 0.1 * far and far > 0.5 and spread >= 0
    assert realism.kid(f, g + 0.5, subsets=20, subset_size=50) == (far, spread)  # seeded: reproducible
    monkeypatch.setattr(realism, "KID_FULL_KERNELS", 0)  # large sets: kernels per subset, the same numbers
    per_subset = realism.kid(f, g + 0.5, subsets=20, subset_size=50)
    assert per_subset[0] == pytest.approx(far, rel=1e-12) and per_subset[1] == pytest.approx(spread, rel=1e-9)
    # the unbiased estimate on one subset equals the formula written out
    x, y = f[:6], f[6:12] + 0.3
    k = lambda p, q: (p @ q.T / 16 + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    expected = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / 30 - 2 * kxy.mean()
    assert realism.mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------------- 3DMM, identity
def test_3dmm_errors():
    rng = np.random.default_rng(2)
    c = rng.normal(size=(4, 257))
    for fn in (threedmm.pose_error, threedmm.expression_error, threedmm.shape_error):
        assert np.all(fn(c, c) == 0)
    d = c.copy()
    d[:, 224] += math.radians(3.0)  # pitch
    d[:, 225] += math.radians(4.0)  # yaw
    np.testing.assert_allclose(threedmm.pose_error(d, c), 5.0, rtol=1e-12)  # degrees
    assert np.all(threedmm.expression_error(d, c) == 0) and np.all(threedmm.shape_error(d, c) == 0)
    e = c.copy()
    e[:, 80:144] += 0.5  # every expression coefficient
    np.testing.assert_allclose(threedmm.expression_error(e, c), 0.5 * 8, rtol=1e-12)
    e[:, 0:80] -= 0.25
    np.testing.assert_allclose(threedmm.shape_error(e, c), 0.25 * math.sqrt(80), rtol=1e-12)


def test_metric_networks_name_real_loaders():
    """``from_file`` resolves each network's loader by name: the names must point at the real functions."""
    import importlib

    from hififace.metrics.identity import IResNetIdentity
    from hififace.metrics.threedmm import ReconCoefficients
    from hififace.converters.arcface import load_arcface
    from hififace.converters.deep3d import load_recon

    for cls, fn in ((IResNetIdentity, load_arcface), (ReconCoefficients, load_recon)):
        module, name = cls.loader.split(":")
        assert getattr(importlib.import_module(module, "hififace"), name) is fn
    assert IResNetIdentity.label.format(file="backbone.pth", arch="100") == "insightface IResNet-100 (backbone.pth)"


def test_cosine_and_retrieval():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    np.testing.assert_allclose(cosine(a, a), 1.0)
    np.testing.assert_allclose(cosine(a, a[[1, 0, 0]]), [0.0, 0.0, math.sqrt(0.5)], atol=1e-12)
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    ok, found = retrieval(np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]), ["a", "b", "b"], gallery, ["a", "b"])
    assert ok.tolist() == [True, True, False] and found == ["a", "b", "a"]


# ---------------------------------------------------------------------------------------------- FID Inception
def test_fid_inception_loads_the_real_format(tmp_path):
    """A random-weight file with the exact keys of pt_inception-2015-12-05-6726825d.pth loads strictly."""
    from fakes import read_manifest, write_fid_inception
    from hififace.metrics.inception import FIDInceptionV3, load_fid_inception

    rows = read_manifest("fid_inception_keys.tsv")
    assert sum(math.prod(s) for k, s, d in rows if d == "float32" and "running_" not in k) == 23_850_960
    own = {k: tuple(v.shape) for k, v in FIDInceptionV3(width=0.0625).state_dict().items()}
    assert list(own) == [k for k, _, _ in rows]  # every key of the file, in its order, at any width
    path = write_fid_inception(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    net = load_fid_inception(path)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    feats = net.features(torch.rand(1, 3, 64, 80))  # any size: resized to 299 inside
    assert feats.shape == (1, 2048) and torch.isfinite(feats).all() and (feats >= 0).all()  # after ReLU + mean
    assert feats.std() > 0 and net.fc(feats).shape == (1, 1008)
    broken = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("Mixed_6c.")}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match="missing .* key"):
        load_fid_inception(tmp_path / "broken.pth")
    torch.save({"net_recon": {}}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="pt_inception"):
        load_fid_inception(tmp_path / "other.pth")


def test_fid_inception_pools_are_the_fid_graphs():
    """What each block's branch_pool sees: the average without the zero padding (A, C, first E; TensorFlow's pool),
    the max in the last E block; torchvision's own blocks would average the padding in."""
    import torch.nn.functional as F

    from hififace.metrics.inception import FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3(width=0.125, input_size=96)
    seen, blocks_in = {}, {}

    def keep(store, name):
        def hook(module, inputs, output):  # returns None: the output is left alone
            store[name] = inputs[0]
        return hook

    for name in ("Mixed_5b", "Mixed_6b", "Mixed_7b", "Mixed_7c"):
        getattr(net, name).branch_pool.register_forward_hook(keep(seen, name))
        getattr(net, name).register_forward_hook(keep(blocks_in, name))
    with torch.no_grad():
        net.features(torch.rand(1, 3, 96, 96))
    for name in ("Mixed_5b", "Mixed_6b", "Mixed_7b"):
        x = blocks_in[name]
        assert torch.equal(seen[name], F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        assert not torch.allclose(seen[name], F.avg_pool2d(x, 3, 1, 1))  # differs at the borders
    assert torch.equal(seen["Mixed_7c"], F.max_pool2d(blocks_in["Mixed_7c"], 3, 1, 1))


# ---------------------------------------------------------------------------------------------- pairs.csv
def test_pairs_file(tmp_path):
    for n in ("a.png", "b.png", "c.png"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "b.png").write_bytes(b"x")
    (tmp_path / "res" / "a.png").write_bytes(b"x")
    csv = tmp_path / "pairs.csv"
    csv.write_text("source,target\na.png,b.png\n\nb.png,a.png\nc.png,c.png\n")
    with pytest.raises(InputImageError) as err:
        read_pairs(csv, tmp_path / "res")
    assert "1 path(s) not found" in str(err.value) and "line 5 result" in str(err.value)  # c.png's result
    (tmp_path / "res" / "c.png").write_bytes(b"x")
    rows = read_pairs(csv, tmp_path / "res")
    assert [r.kind for r in rows] == ["swap", "swap", "self"]
    assert rows[0].result == tmp_path / "res" / "b.png" and rows[0].source == tmp_path / "a.png"
    assert rows[1].source_id == str(tmp_path / "b.png") and [r.line for r in rows] == [2, 4, 5]
    with pytest.raises(ConfigError, match="--weights"):
        read_pairs(csv, need_results=True)
    csv.write_text("source,target\na.png,b.png\nc.png,b.png\n")
    with pytest.raises(ConfigError, match="share the target file name b.png"):
        read_pairs(csv, tmp_path / "res")
    csv.write_text("src,target\na.png,b.png\n")
    with pytest.raises(ConfigError, match="no source column"):
        read_pairs(csv)
    csv.write_text("source,target\nmissing1.png,b.png\na.png,missing2.png\n")
    with pytest.raises(InputImageError, match="2 path.*missing1.png.*missing2.png"):
        read_pairs(csv, need_results=False)


# ---------------------------------------------------------------------------------------------- cache, FF++
def test_feature_cache_survives_and_appends(tmp_path):
    c = FeatureCache(tmp_path, "ns", flush_every=2)
    c.put("a", np.arange(3))
    c.put("b", np.ones(3))  # flushed
    c.put("c", np.zeros(3))  # pending: lost if the process dies now
    again = FeatureCache(tmp_path, "ns")
    assert sorted(again._data) == ["a", "b"] and again.get("a").tolist() == [0, 1, 2]
    c.flush()
    assert "c" in FeatureCache(tmp_path, "ns")
    (tmp_path / "ns" / "chunk-broken.npz").write_bytes(b"not a zip")
    assert len(FeatureCache(tmp_path, "ns")) == 3  # an unreadable chunk is ignored
    assert not list((tmp_path / "ns").glob(".*"))  # no temporaries left


def test_ffpp_frame_sampling():
    assert sample_indices(100) == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert sample_indices(25) == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23]
    assert sample_indices(7) == list(range(7)) and sample_indices(0) == []
    for n in (10, 11, 397, 1000):
        idx = sample_indices(n)
        assert len(set(idx)) == 10 and idx == sorted(idx) and 0 <= idx[0] and idx[-1] < n


def test_ffpp_reads_the_sampled_video_frames(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from hififace.metrics.ffpp import read_video_frames

    path = tmp_path / "000.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4")
    for i in range(25):
        writer.write(np.full((48, 64, 3), 8 * i + 10, np.uint8))
    writer.release()
    n, frames = read_video_frames(path)
    assert n == 25 and [i for i, _ in frames] == sample_indices(25)
    for i, f in frames:
        assert f.shape == (48, 64, 3) and abs(float(f.mean()) - (8 * i + 10)) < 4  # the frame we asked for (neighbours are 8 apart)


def feature_stats(features: np.ndarray) -> realism.Gaussian:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors (N x D), got shape {f.shape}")
    return realism.Gaussian(f.mean(axis=0), np.cov(f, rowvar=False), f.shape[0])
