import pytest
import torch

from ebm.sam import SAM


def _loss(w, x, y):
    return ((x @ w - y) ** 2).mean() + 0.1 * (w ** 4).sum()


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_sam_step_equals_the_hand_computed_update(adaptive):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    w0 = torch.randn(3, dtype=torch.float64)
    rho, lr = 0.3, 0.05

    # by hand: g at w, ascent to w + e, gradient there, plain SGD step from w
    w = w0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_loss(w, x, y), w)
    t = w0.abs() if adaptive else torch.ones_like(w0)
    e = rho * t * t * g / torch.linalg.vector_norm(t * g)
    w_pert = (w0 + e).requires_grad_(True)
    (g2,) = torch.autograd.grad(_loss(w_pert, x, y), w_pert)
    expected = w0 - lr * g2

    p = torch.nn.Parameter(w0.clone())
    sam = SAM(torch.optim.SGD([p], lr=lr), rho=rho, adaptive=adaptive)

    def closure():
        sam.zero_grad()
        loss = _loss(p, x, y)
        loss.backward()
        return loss

    sam.step(closure)
    assert torch.allclose(p.detach(), expected, atol=1e-12)


def test_rho_zero_is_the_base_optimizer():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    sam = SAM(torch.optim.SGD([p], lr=0.1), rho=0.0)

    def closure():
        sam.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    sam.step(closure)
    assert torch.allclose(p.detach(), torch.tensor([0.8, -1.6]))
