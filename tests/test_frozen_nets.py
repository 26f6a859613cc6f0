"""Frozen identity networks: exact keys, op order against straightforward re-computations, frozen behaviour,
and the BFM landmark projection against a plain numpy version of Deep3DFaceRecon's full-mesh pipeline."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fakes import read_manifest, write_bfm_mat
from hififace.errors import WeightsError
from hififace.models.frozen import FrozenModule
from hififace.models.frozen.arcface import IRESNET_LAYERS, IResNet, arcface_arch_from_state_dict
from hififace.models.frozen.bfm import BFMLandmarks, load_bfm_mat, rotation_matrix
from hififace.models.frozen.recon import FINAL_DIMS, ReconNet


def _signature(module: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()]


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and PReLU slopes, so that a wrong op order shows in the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.ndim == 1:  # BN affine weights and PReLU slopes
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            else:
                t.copy_(torch.randn(t.shape, generator=gen) / math.sqrt(t[0].numel()))
    return module


# ----------------------------------------------------------------------------------------- key manifests
@pytest.mark.parametrize("arch,manifest", [("r50", "arcface_iresnet50_keys.tsv"), ("r100", "arcface_iresnet100_keys.tsv")])
def test_iresnet_keys_shapes_and_order_equal_manifest(arch, manifest):
    assert _signature(IResNet(arch)) == read_manifest(manifest)


def test_reconnet_keys_shapes_and_order_equal_manifest():
    assert _signature(ReconNet()) == read_manifest("deep3d_reconnet_r50_keys.tsv")


@pytest.mark.parametrize("arch", list(IRESNET_LAYERS))
def test_arch_detected_from_blocks(arch):
    assert arcface_arch_from_state_dict(IResNet(arch, width=0.0625).state_dict()) == arch


def test_arch_detection_from_manifests_and_unknown_depth():
    for arch, manifest in (("r50", "arcface_iresnet50_keys.tsv"), ("r100", "arcface_iresnet100_keys.tsv")):
        assert arcface_arch_from_state_dict({k: None for k, _, _ in read_manifest(manifest)}) == arch
    state = {k: v for k, v in IResNet("r34", width=0.0625).state_dict().items() if not k.startswith("layer3.5.")}
    with pytest.raises(WeightsError, match=r"somefile\.pth.*\[3, 4, 5, 3\]"):
        arcface_arch_from_state_dict(state, "somefile.pth")


def test_bad_arch_and_width_rejected():
    with pytest.raises(ValueError, match="r200"):
        IResNet("r200")
    with pytest.raises(ValueError):
        ReconNet(width=0)


# ----------------------------------------------------------------------------------------- op order
def _bn(x, state, p, eps=1e-5):
    return F.batch_norm(x, state[p + "running_mean"], state[p + "running_var"], state[p + "weight"], state[p + "bias"],
                        False, 0.0, eps)


def _reference_iresnet(state, x, layers):
    """insightface IResNet written out op by op from its state_dict."""
    x = F.prelu(_bn(F.conv2d(x, state["conv1.weight"], padding=1), state, "bn1."), state["prelu.weight"])
    for s, n in enumerate(layers, start=1):
        for b in range(n):
            p = f"layer{s}.{b}."
            stride = 2 if b == 0 else 1
            out = _bn(x, state, p + "bn1.")
            out = F.conv2d(out, state[p + "conv1.weight"], padding=1)
            out = F.prelu(_bn(out, state, p + "bn2."), state[p + "prelu.weight"])
            out = _bn(F.conv2d(out, state[p + "conv2.weight"], stride=stride, padding=1), state, p + "bn3.")
            short = x
            if p + "downsample.0.weight" in state:
                short = _bn(F.conv2d(x, state[p + "downsample.0.weight"], stride=stride), state, p + "downsample.1.")
            x = out + short
    x = _bn(x, state, "bn2.").flatten(1)
    x = F.linear(x, state["fc.weight"], state["fc.bias"])
    return _bn(x, state, "features.")


def _reference_reconnet(state, x):
    """Deep3DFaceRecon ReconNetWrapper (torchvision ResNet-50 v1.5 + seven 1x1 heads) written out op by op."""
    x = F.relu(_bn(F.conv2d(x, state["backbone.conv1.weight"], stride=2, padding=3), state, "backbone.bn1."))
    x = F.max_pool2d(x, 3, 2, 1)
    for s, n in enumerate((3, 4, 6, 3), start=1):
        for b in range(n):
            p = f"backbone.layer{s}.{b}."
            stride = 2 if (b == 0 and s > 1) else 1
            out = F.relu(_bn(F.conv2d(x, state[p + "conv1.weight"]), state, p + "bn1."))
            out = F.relu(_bn(F.conv2d(out, state[p + "conv2.weight"], stride=stride, padding=1), state, p + "bn2."))
            out = _bn(F.conv2d(out, state[p + "conv3.weight"]), state, p + "bn3.")
            short = x
            if p + "downsample.0.weight" in state:
                short = _bn(F.conv2d(x, state[p + "downsample.0.weight"], stride=stride), state, p + "downsample.1.")
            x = F.relu(out + short)
    x = x.mean(dim=(2, 3), keepdim=True)
    heads = [F.conv2d(x, state[f"final_layers.{i}.weight"], state[f"final_layers.{i}.bias"]) for i in range(7)]
    return torch.cat(heads, 1).flatten(1)


def test_iresnet_forward_matches_insightface_op_order():
    torch.manual_seed(0)
    net = _randomise(IResNet("r18", width=0.125))
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    out = net(x)
    assert out.shape == (2, 512)
    torch.testing.assert_close(out, _reference_iresnet(net.state_dict(), x, IRESNET_LAYERS["r18"]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [(64, 64), (72, 56)])
def test_reconnet_forward_matches_deep3d_op_order_any_size(size):
    torch.manual_seed(1)
    net = _randomise(ReconNet(width=0.0625), seed=1)
    x = torch.rand(2, 3, *size)
    out = net(x)
    assert out.shape == (2, 257)
    torch.testing.assert_close(out, _reference_reconnet(net.state_dict(), x), rtol=1e-4, atol=1e-4)


def test_reconnet_heads_concatenated_in_coefficient_order():
    net = ReconNet(width=0.0625)
    with torch.no_grad():
        for i, layer in enumerate(net.final_layers):
            layer.weight.zero_()
            layer.bias.fill_(float(i))
    out = net(torch.rand(1, 3, 64, 64))[0]
    expected = torch.cat([torch.full((k,), float(i)) for i, k in enumerate(FINAL_DIMS)])
    assert torch.equal(out, expected)
    assert [k for k in FINAL_DIMS] == [80, 64, 80, 3, 27, 2, 1]


# ----------------------------------------------------------------------------------------- frozen behaviour
class _Parent(nn.Module):
    def __init__(self):
        super().__init__()
        self.arcface = _randomise(IResNet("r18", width=0.0625))
        self.recon = _randomise(ReconNet(width=0.0625))
        self.head = nn.Linear(4, 4)


def test_frozen_nets_stay_in_eval_and_keep_bn_statistics():
    parent = _Parent()
    parent.train()
    assert parent.head.training
    for net in (parent.arcface, parent.recon):
        assert isinstance(net, FrozenModule)
        assert not any(m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
    before = {k: v.clone() for k, v in parent.state_dict().items() if "running" in k or "num_batches" in k}
    x = torch.rand(3, 3, 112, 112)
    a1 = parent.arcface(x * 2 - 1)
    parent.recon(x[..., :64, :64])
    after = parent.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    # eval BN: a sample's output does not depend on the rest of the batch
    torch.testing.assert_close(parent.arcface(x[:1] * 2 - 1), a1[:1], rtol=1e-3, atol=1e-4)


def test_gradient_flows_to_the_input_only():
    parent = _Parent()
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    loss = parent.arcface(x * 2 - 1).pow(2).mean() + parent.recon(x[..., ::2, ::2]).pow(2).mean()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert all(p.grad is None for p in list(parent.arcface.parameters()) + list(parent.recon.parameters()))


# ----------------------------------------------------------------------------------------- BFM
def _numpy_deep3d_landmarks(mat_path, coeffs):
    """Deep3DFaceRecon's ParametricFaceModel.compute_for_render landmark path on the FULL mesh, in numpy."""
    import scipy.io

    m = scipy.io.loadmat(str(mat_path))
    mean = m["meanshape"].astype(np.float64).reshape(-1, 3)
    mean = (mean - mean.mean(0, keepdims=True)).reshape(1, -1)
    kp = np.squeeze(m["keypoints"]).astype(np.int64) - 1
    out = []
    for c in coeffs.astype(np.float64):
        shape = (m["idBase"] @ c[:80] + m["exBase"] @ c[80:144] + mean[0]).reshape(-1, 3)
        x, y, z = c[224:227]
        rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
        ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
        rot = (rz @ ry @ rx).T
        v = shape @ rot + c[254:257]
        v[:, 2] = 10.0 - v[:, 2]
        persc = np.array([[1015.0, 0, 112.0], [0, 1015.0, 112.0], [0, 0, 1]]).T
        proj = v @ persc
        proj = proj[:, :2] / proj[:, 2:]
        out.append(proj[kp])
    return np.stack(out)


@pytest.fixture(scope="module")
def bfm_mat(tmp_path_factory):
    return write_bfm_mat(tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat", n_vertices=500, seed=3)


def test_bfm_matches_full_mesh_numpy_pipeline(bfm_mat):
    bfm = load_bfm_mat(bfm_mat)
    assert bfm.mean_shape.shape == (68, 3) and bfm.id_base.shape == (204, 80) and bfm.exp_base.shape == (204, 64)
    rng = np.random.default_rng(0)
    coeffs = np.zeros((4, 257))
    coeffs[:, :80] = rng.normal(0, 1, (4, 80))
    coeffs[:, 80:144] = rng.normal(0, 1, (4, 64))
    coeffs[:, 144:254] = rng.normal(0, 1, (4, 110))  # tex/gamma must not matter
    coeffs[:, 224:227] = rng.uniform(-0.5, 0.5, (4, 3))
    coeffs[:, 254:257] = rng.normal(0, 0.2, (4, 3))
    ours = bfm(torch.tensor(coeffs, dtype=torch.float32)).numpy()
    ref = _numpy_deep3d_landmarks(bfm_mat, coeffs)
    assert ours.shape == (4, 68, 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-3)


def test_bfm_zero_coefficients_give_projected_recentred_mean(bfm_mat):
    import scipy.io

    bfm = load_bfm_mat(bfm_mat)
    m = scipy.io.loadmat(str(bfm_mat))
    full = m["meanshape"].reshape(-1, 3)
    assert np.abs(full.mean(0)).max() > 0.05  # the fake is off-centre, so recentring is exercised
    mean = (full - full.mean(0))[np.squeeze(m["keypoints"]).astype(int) - 1]
    np.testing.assert_allclose(bfm.mean_shape.numpy(), mean, rtol=1e-5, atol=1e-6)
    lms = bfm(torch.zeros(2, 257)).numpy()
    expected = 1015.0 * mean[:, :2] / (10.0 - mean[:, 2:]) + 112.0
    np.testing.assert_allclose(lms[0], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(lms[1], expected, rtol=1e-5, atol=1e-4)


def test_rotation_by_known_angles():
    half = math.pi / 2
    cases = [((half, 0, 0), (0, 1, 0), (0, 0, 1)),
             ((0, half, 0), (1, 0, 0), (0, 0, -1)),
             ((0, 0, half), (1, 0, 0), (0, 1, 0))]
    for angles, point, expected in cases:
        rot = rotation_matrix(torch.tensor([angles]))
        moved = torch.tensor([[point]], dtype=torch.float32) @ rot
        torch.testing.assert_close(moved[0, 0], torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0)
    # composition order: Rz.Ry.Rx applied to column vectors
    a = torch.tensor([[0.3, -0.2, 0.5]])
    rot = rotation_matrix(a)[0]
    p = torch.tensor([0.1, 0.7, -0.4])
    rx = rotation_matrix(torch.tensor([[0.3, 0, 0]]))[0].T
    ry = rotation_matrix(torch.tensor([[0, -0.2, 0]]))[0].T
    rz = rotation_matrix(torch.tensor([[0, 0, 0.5]]))[0].T
    torch.testing.assert_close(p @ rot, rz @ (ry @ (rx @ p)), atol=1e-6, rtol=0)


def test_roll_by_pi_mirrors_landmarks_about_the_centre():
    bfm = BFMLandmarks.random(seed=1)
    c = torch.zeros(1, 257)
    base = bfm(c)
    c[0, 226] = math.pi
    turned = bfm(c)
    torch.testing.assert_close(turned - 112.0, -(base - 112.0), atol=1e-3, rtol=0)


def test_translation_moves_landmarks_right_and_up():
    bfm = BFMLandmarks.random(seed=2)
    c = torch.zeros(1, 257)
    base = bfm(c)
    c[0, 254] = 0.1
    right = bfm(c)
    assert (right[..., 0] > base[..., 0]).all() and torch.allclose(right[..., 1], base[..., 1])
    c[0, 254], c[0, 255] = 0.0, 0.1
    up = bfm(c)
    assert (up[..., 1] > base[..., 1]).all()
    torch.testing.assert_close(BFMLandmarks.to_pixel_frame(up)[..., 1], 223.0 - up[..., 1])


def test_bfm_is_frozen_and_differentiable_in_coefficients():
    bfm = BFMLandmarks.random(seed=0)
    parent = nn.Sequential(bfm)
    parent.train()
    assert not bfm.training and list(bfm.parameters()) == []
    c = (0.1 * torch.randn(2, 257)).requires_grad_()
    bfm(c).sum().backward()
    assert c.grad[:, :80].abs().sum() > 0 and c.grad[:, 224:227].abs().sum() > 0
    assert torch.equal(c.grad[:, 144:224], torch.zeros(2, 80))  # texture does not move landmarks


def test_bfm_random_is_deterministic():
    a, b = BFMLandmarks.random(seed=5), BFMLandmarks.random(seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.mean_shape, BFMLandmarks.random(seed=6).mean_shape)
