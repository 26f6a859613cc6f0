"""HifiFace loss terms as pure functions of tensors (no modules are built here).

Reductions follow the reference (mindslab-ai/hififace ``model/loss.py``): every L1 is a mean over all elements,
and the same-identity gate multiplies both sides by ``same`` (so the mean still runs over the whole batch).
Discriminator outputs are lists of logit tensors (one per scale).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_to(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize as the reference (align_corners=False); antialiased only beyond 4x down (512 models)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    factor = x.shape[-1] / size[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=factor > 4)


def _gate(same: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return same.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def cosine_distance(v_source: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """mean |1 - cos(v_s, v)| over the batch, for L2-normalised embeddings."""
    return (1 - (v_source * v).sum(dim=-1)).abs().mean()


def identity_loss(v_source: torch.Tensor, v_r: torch.Tensor, v_low: torch.Tensor) -> torch.Tensor:
    """L_id = mean(1 - cos(v_s, v_r)) + mean(1 - cos(v_s, v_low)) for L2-normalised embeddings."""
    return cosine_distance(v_source, v_r) + cosine_distance(v_source, v_low)


def landmark_loss(q_fuse: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """L1(q_fuse, q) over the 68 projected 3DMM landmarks of one generated image batch."""
    return F.l1_loss(q, q_fuse)


def shape_loss(q_fuse: torch.Tensor, q_r: torch.Tensor, q_low: torch.Tensor) -> torch.Tensor:
    """L_shape = L1(q_fuse, q_r) + L1(q_fuse, q_low) over the 68 projected 3DMM landmarks."""
    return landmark_loss(q_fuse, q_r) + landmark_loss(q_fuse, q_low)


def segmentation_loss(m_tar: torch.Tensor, m_r: torch.Tensor, m_low: torch.Tensor) -> torch.Tensor:
    """L_seg = L1(resize(M_tar, 64), m_low) + L1(M_tar, m_r)."""
    return F.l1_loss(m_low, resize_to(m_tar, m_low.shape[-2:])) + F.l1_loss(m_r, m_tar)


def reconstruction_loss(i_r: torch.Tensor, i_low: torch.Tensor, i_t: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """L_rec = L1(I_r, I_t) + L1(I_low, resize(I_t, 64)), only where ``same`` is 1 (others contribute zero)."""
    g = _gate(same, i_r)
    t_low = resize_to(i_t, i_low.shape[-2:])
    return F.l1_loss(i_r * g, i_t * g) + F.l1_loss(i_low * g, t_low * g)


def cycle_loss(i_t: torch.Tensor, i_cycle: torch.Tensor) -> torch.Tensor:
    """L_cyc = L1(I_t, G(source=I_t, target=I_r))."""
    return F.l1_loss(i_cycle, i_t)


def same_pairs(same: torch.Tensor) -> torch.Tensor:
    """Indices of the same-identity samples (``same > 0.5``). On a GPU this waits for the device (the count sets
    the result's size): compute it on the host, where the batch comes from, and pass it to :func:`lpips_loss`."""
    return (same.reshape(-1) > 0.5).nonzero().flatten()


def lpips_loss(lpips_fn, i_r: torch.Tensor, i_t: torch.Tensor, same: torch.Tensor,
               same_index: torch.Tensor | None = None) -> torch.Tensor:
    """L_lpips = mean over the batch of same * LPIPS(I_r, I_t) (the reference's zeroed pairs give exactly 0).

    Only same-identity samples go through VGG (the others would cost a forward pass to add zero).
    ``same_index``: :func:`same_pairs` of ``same``, computed beforehand to keep this free of host syncs.
    """
    if same_index is None:
        same_index = same_pairs(same)
    if same_index.numel() == 0:
        return i_r.sum() * 0.0  # keeps the graph connected (DDP needs every rank to reach the same params)
    same_index = same_index.to(i_r.device)
    d = lpips_fn(i_r.index_select(0, same_index), i_t.index_select(0, same_index))
    return (d * same.reshape(-1).index_select(0, same_index).to(d.dtype)).sum() / i_r.shape[0]


# ---------------------------------------------------------------------- adversarial
def _mean_over_scales(outputs: list[torch.Tensor], fn) -> torch.Tensor:
    return sum(fn(o.float()).mean() for o in outputs) / len(outputs)


def hinge_g_loss(d_fake: list[torch.Tensor]) -> torch.Tensor:
    """Generator hinge loss averaged over the discriminator scales: mean_k(-mean D_k(I_r))."""
    return _mean_over_scales(d_fake, lambda o: -o)


def hinge_d_loss(d_real: list[torch.Tensor], d_fake: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, fake) hinge terms: mean_k mean relu(1 - D_k(x)), mean_k mean relu(1 + D_k(G))."""
    return _mean_over_scales(d_real, lambda o: F.relu(1 - o)), _mean_over_scales(d_fake, lambda o: F.relu(1 + o))


def nonsaturating_g_loss(d_fake: list[torch.Tensor]) -> torch.Tensor:
    """Non-saturating generator loss softplus(-D(I_r))."""
    return _mean_over_scales(d_fake, lambda o: F.softplus(-o))


def nonsaturating_d_loss(d_real: list[torch.Tensor], d_fake: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, fake) terms softplus(-D(x)), softplus(D(G))."""
    return _mean_over_scales(d_real, lambda o: F.softplus(-o)), _mean_over_scales(d_fake, lambda o: F.softplus(o))


def r1_penalty(d_real: list[torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 = 0.5 * E||grad_x D(x)||^2 on real images (StarGAN v2's form); ``real`` must require grad."""
    total = sum(o.float().sum() for o in d_real)
    (grad,) = torch.autograd.grad(total, real, create_graph=True)
    return 0.5 * grad.float().pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()
