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


def test_first_step_moves_to_the_ascent_point_and_second_step_comes_back_before_stepping():
    """w → w + ρ g/‖g‖ (the gradient is evaluated there), then back to exactly w before the base step."""
    w0 = torch.tensor([3.0, -4.0])
    p = torch.nn.Parameter(w0.clone())
    seen = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(p.detach().clone())  # where the base optimizer starts from
            return super().step(closure)

    sam = SAM(Recording([p], lr=0.1), rho=0.5)
    (p ** 2).sum().backward()  # g = 2w = (6, -8), ‖g‖ = 10
    sam.first_step()
    assert torch.allclose(p.detach(), w0 + 0.5 * torch.tensor([0.6, -0.8]))  # the ascent point
    sam.zero_grad()
    (p ** 2).sum().backward()  # g' = 2(w + e)
    g2 = p.grad.clone()
    sam.second_step()
    assert torch.equal(seen[0], w0)  # back at w before the step
    assert torch.allclose(p.detach(), w0 - 0.1 * g2)
