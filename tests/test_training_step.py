"""early_backward / with_gradient: the lean training step computes the same values and gradients as a plain one."""
from __future__ import annotations

import torch
from torch import nn

from hififace.losses.composite import early_backward, with_gradient


def _nets():
    torch.manual_seed(0)
    first = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh()).double()  # "generator": trained
    frozen = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 1, 3)).double().requires_grad_(False)
    return first, frozen


def test_early_backward_gives_the_same_value_and_gradients():
    first, frozen = _nets()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    term = lambda y: frozen(y).pow(2).mean()  # noqa: E731

    plain = term(first(x)) * 3.0
    grads_plain = torch.autograd.grad(plain, list(first.parameters()))
    early = early_backward(term, first(x)) * 3.0
    grads_early = torch.autograd.grad(early, list(first.parameters()))
    assert early.item() == plain.item()
    for a, b in zip(grads_plain, grads_early):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    assert all(p.grad is None for p in frozen.parameters())


def test_early_backward_through_trained_weights_reaches_them_once():
    first, frozen = _nets()
    second = nn.Conv2d(4, 4, 3, padding=1).double()  # e.g. the cycle pass: its weights are trained too
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    term = lambda y: second(y).abs().mean()  # noqa: E731
    params = list(first.parameters()) + list(second.parameters())

    plain = term(first(x))
    g_plain = torch.autograd.grad(plain, params)
    early = early_backward(term, first(x), params=list(second.parameters()))
    early.backward()
    assert early.item() == plain.item()
    for p, g in zip(params, g_plain):
        assert torch.allclose(p.grad, g, rtol=1e-10, atol=1e-14)


def test_early_backward_without_grad_is_the_plain_call():
    first, frozen = _nets()
    with torch.no_grad():
        y = first(torch.rand(1, 3, 8, 8, dtype=torch.float64))
        out = early_backward(lambda t: frozen(t).sum(), y)
    assert not out.requires_grad and out.item() == frozen(y).sum().item()


def test_with_gradient_keeps_the_value_exactly():
    x = torch.rand(5, requires_grad=True)
    g = torch.tensor([1.0, -2.0, 0.0, 3.0, 0.5])
    v = torch.tensor(7.25)
    out = with_gradient(v, [(x * 1.0, g), (x, None)])
    assert out.item() == 7.25
    out.backward()
    assert torch.equal(x.grad, g)
