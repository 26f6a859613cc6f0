"""The generator and discriminator objectives of HifiFace, combined with weights from the training config.

The frozen networks (ArcFace, ReconNet, BFM landmarks, LPIPS-VGG) are passed in, never built here: the
training module shares the model's own instances, so they exist once, stay frozen and stay out of optimizers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import N_COEFFS, N_ID_COEFFS
from . import functional as L
from .config import ADV_MODES, LossConfig  # noqa: F401 (re-exported)

@dataclass
class LossNets:
    """The frozen networks the losses use: shared instances, owned elsewhere.

    ``id_extractor`` is the model's :class:`~hififace.models.identity.ShapeAwareIdentityExtractor`;
    ``landmarks`` maps N x 257 coefficients to N x 68 x 2 projected landmarks (BFM keypoint rows only);
    ``lpips`` is :class:`~hififace.losses.lpips.LPIPS`.
    """

    id_extractor: nn.Module
    landmarks: nn.Module
    lpips: nn.Module


def _effective_recon_size(id_extractor: nn.Module, image_size: int) -> int:
    return id_extractor.config.recon_input_size or image_size


def _fp16_autocast() -> bool:
    return any(torch.is_autocast_enabled(d) and torch.get_autocast_dtype(d) == torch.float16 for d in ("cpu", "cuda"))


def with_gradient(value: torch.Tensor, pairs) -> torch.Tensor:
    """``value`` (detached) carrying already computed gradients: d out / d x = g for each ``(x, g)`` in ``pairs``.

    The surrogate ``s - s.detach()`` with ``s = sum((x * g).sum())`` is exactly zero, so the value is unchanged.
    """
    s = None
    for x, g in pairs:
        if g is not None:
            t = (x * g.to(x.dtype)).sum()
            s = t if s is None else s + t
    return value.detach() if s is None else value.detach() + (s - s.detach()).to(value.dtype)


def early_backward(fn, *xs: torch.Tensor, params=()) -> torch.Tensor:
    """``fn(*xs)`` (a scalar) with its gradients w.r.t. ``xs`` (and ``params``) computed *now*.

    Same value, same gradient (up to float rounding) as calling ``fn(*xs)`` directly, but the activations ``fn``
    keeps for backward (frozen ArcFace / ReconNet / VGG, the discriminator) are freed before the next term is built:
    the step's peak memory holds one of these graphs at a time instead of all of them. Falls back to the plain call
    without gradients, and under float16 autocast (unscaled early gradients could underflow).
    """
    if not torch.is_grad_enabled() or not any(x.requires_grad for x in xs) or _fp16_autocast():
        return fn(*xs)
    leaves = [x.detach().requires_grad_(x.requires_grad) for x in xs]
    value = fn(*leaves)
    if not value.requires_grad:
        return value
    want = [(x, leaf) for x, leaf in zip(xs, leaves) if leaf.requires_grad] + [(p, p) for p in params]
    grads = torch.autograd.grad(value, [w for _, w in want], allow_unused=True)
    return with_gradient(value, zip([x for x, _ in want], grads))


def generator_loss(
    nets: LossNets,
    cfg: LossConfig,
    *,
    source: torch.Tensor,
    target: torch.Tensor,
    m_tar: torch.Tensor,
    same: torch.Tensor,
    v_sid: torch.Tensor,
    i_r: torch.Tensor,
    i_low: torch.Tensor,
    m_r: torch.Tensor,
    m_low: torch.Tensor,
    i_cycle: torch.Tensor,
    d_fake: list[torch.Tensor] | None = None,
    discriminator: nn.Module | None = None,
    cycle_term: torch.Tensor | None = None,
    same_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total generator loss ``SID + realism`` and a dict of every (unweighted) term, detached.

    ``v_sid`` is the identity vector the generator was fed (c_fuse | v_id(source)); its parts are reused instead of
    running the frozen nets on source and target again whenever the sizes agree. The terms through frozen nets are
    back-propagated to ``i_r`` / ``i_low`` one at a time (:func:`early_backward`) to keep peak memory low.
    ``cycle_term``: L_cyc already computed by the caller (e.g. with :func:`early_backward`); ``i_cycle`` is then unused.
    ``d_fake``: the discriminator's outputs on ``i_r``; or pass ``discriminator`` (its parameters frozen for the G
    step) and it is applied here, its activations freed before the next term.
    ``same_index``: the indices of the same-identity samples (:func:`~hififace.losses.functional.same_pairs`),
    computed on the host beforehand so that the step needs no host sync; found from ``same`` otherwise.
    """
    if (d_fake is None) == (discriminator is None):
        raise ValueError("generator_loss: pass exactly one of d_fake and discriminator")
    ext = nets.id_extractor
    image_size = target.shape[-1]
    f32 = lambda t: t.float()  # noqa: E731 - losses in float32 even under autocast

    # --- shape-aware identity (SID): gradients flow into I_r / I_low through the frozen nets, not into them
    v_s = v_sid[:, N_COEFFS:]

    def id_term(x):
        return L.cosine_distance(f32(v_s), f32(ext.embed(x)))

    # L_id = distance(I_r) + distance(I_low), each through ArcFace on its own: one graph alive at a time
    l_id = early_backward(id_term, i_r) + early_backward(id_term, i_low)

    size = cfg.recon_size or _effective_recon_size(ext, image_size)
    if size == _effective_recon_size(ext, image_size):
        c_fuse = v_sid[:, :N_COEFFS]
    else:
        with torch.no_grad():
            c_s, c_t = ext.recon(torch.cat([L.resize_to(source, size), L.resize_to(target, size)])).split(
                [source.shape[0], target.shape[0]])
            c_fuse = torch.cat([c_s[:, :N_ID_COEFFS], c_t[:, N_ID_COEFFS:]], dim=1)
    with torch.no_grad():
        q_fuse = nets.landmarks(f32(c_fuse))

    def landmark_term(x):
        return L.landmark_loss(q_fuse, nets.landmarks(f32(ext.recon(L.resize_to(x, size)))))

    # L_shape = landmark_loss(I_r) + landmark_loss(I_low): one ReconNet graph at a time (the step's memory peak)
    l_shape = early_backward(landmark_term, i_r) + early_backward(landmark_term, i_low)

    # --- realism
    l_seg = L.segmentation_loss(f32(m_tar), f32(m_r), f32(m_low))
    l_rec = L.reconstruction_loss(f32(i_r), f32(i_low), f32(target), same)
    l_cyc = cycle_term if cycle_term is not None else L.cycle_loss(f32(target), f32(i_cycle))
    if cfg.lpips > 0:
        l_lpips = early_backward(lambda i_r: L.lpips_loss(nets.lpips, i_r, target, same, same_index).float(), i_r)
    else:
        l_lpips = i_r.new_zeros(())
    adv = L.hinge_g_loss if cfg.adversarial == "hinge" else L.nonsaturating_g_loss
    if d_fake is None:  # D(I_r) here, back-propagated to I_r at once (D's parameters must not require grad)
        l_adv = early_backward(lambda i_r: adv(discriminator(i_r)), i_r)
    else:
        l_adv = adv(d_fake)

    sid = cfg.id * l_id + cfg.shape * l_shape
    realism = cfg.adv * l_adv + cfg.seg * l_seg + cfg.rec * l_rec + cfg.cyc * l_cyc + cfg.lpips * l_lpips
    total = sid + realism
    terms = {
        "id": l_id, "shape": l_shape, "sid": sid, "seg": l_seg, "rec": l_rec, "cyc": l_cyc, "lpips": l_lpips,
        "adv_g": l_adv, "realism": realism, "g_total": total,
    }
    return total, {k: v.detach() for k, v in terms.items()}


def discriminator_loss(
    discriminator: nn.Module, cfg: LossConfig, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Discriminator loss on real targets and detached fakes: hinge (reference) or non-saturating + R1 (paper)."""
    use_r1 = cfg.adversarial == "nonsaturating" and cfg.r1 > 0
    if use_r1:
        real = real.detach().requires_grad_(True)
    d_real = discriminator(real)
    d_fake = discriminator(fake.detach())
    if cfg.adversarial == "hinge":
        l_real, l_fake = L.hinge_d_loss(d_real, d_fake)
    else:
        l_real, l_fake = L.nonsaturating_d_loss(d_real, d_fake)
    total = l_real + l_fake
    terms = {"d_real": l_real, "d_fake": l_fake}
    if use_r1:
        r1 = L.r1_penalty(d_real, real)
        total = total + cfg.r1 * r1
        terms["r1"] = r1
    terms["d_total"] = total
    terms["d_out_real"] = torch.stack([o.float().mean() for o in d_real]).mean()
    terms["d_out_fake"] = torch.stack([o.float().mean() for o in d_fake]).mean()
    return total, {k: v.detach() for k, v in terms.items()}
