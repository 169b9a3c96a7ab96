"""PGD: budgets respected, closed-form optimum on a linear model, lowers a trained network's accuracy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ebm.eval.robustness import pgd, pgd_attack, robust_accuracy


def _small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 3))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_budget_and_box(norm, random_start):
    model = _small_cnn()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(16, 3, 8, 8, generator=g) * 2 - 1).clamp(-0.9, 0.9)  # (16, 3, 8, 8)
    x[:4] = torch.sign(x[:4])  # images on the box's faces: clamping must bite
    y = torch.randint(0, 3, (16,), generator=g)
    eps = 8 * 2 / 255 if norm == "linf" else 1.0
    x_adv = pgd(model, x, y, norm=norm, eps=eps, step=eps / 3, steps=7, random_start=random_start, generator=g)
    delta = (x_adv - x).flatten(1)  # (16, 192)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5
    assert x_adv.min() >= -1 and x_adv.max() <= 1
    assert delta.abs().sum() > 0  # it moved
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())


def _linear_binary(d: int, seed: int) -> tuple[nn.Module, torch.Tensor]:
    """A linear 2-class classifier on (3, 4, 4) images; returns it and w = w_1 − w_0 (d,)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    return model, (model[1].weight[1] - model[1].weight[0]).detach()


def _margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the other one, (B,)."""
    with torch.no_grad():
        z = model(x)
    return z.gather(1, y[:, None])[:, 0] - z.gather(1, 1 - y[:, None])[:, 0]


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [False, True])
def test_linear_model_closed_form(norm, random_start):
    """For a linear binary classifier the worst case in the ball lowers the true-class margin by exactly
    ε‖w‖₁ (L∞) or ε‖w‖₂ (L2); PGD reaches it and is at least as strong as one FGSM step."""
    d = 48
    model, w = _linear_binary(d, seed=1)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 3, 4, 4, generator=g) - 0.5  # (32, 3, 4, 4) in [-0.5, 0.5]: the box never binds
    y = torch.randint(0, 2, (32,), generator=g)
    eps = 0.1 if norm == "linf" else 0.5
    x_adv = pgd(model, x, y, norm=norm, eps=eps, step=eps / 4, steps=40, random_start=random_start, generator=g)
    shift = eps * (w.abs().sum() if norm == "linf" else w.norm())
    expected = _margin(model, x, y) - shift  # (32,)
    got = _margin(model, x_adv, y)
    tol = 1e-4 if not random_start else 1e-3 * shift.item()  # random start: converges geometrically
    assert torch.allclose(got, expected, atol=tol)
    # FGSM: one full step along the sign / normalised gradient of the loss
    sign = torch.where(y == 1, -1.0, 1.0)[:, None]  # the loss grows along −w for y = 1, +w for y = 0
    direction = (sign * w).sign() if norm == "linf" else sign * w / w.norm()  # (32, 48)
    x_fgsm = x + eps * direction.view(-1, 3, 4, 4)
    assert (got <= _margin(model, x_fgsm, y) + 1e-4).all()


def _separable_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 32, 32, 3) images: ±0.04 times a fixed random ±1 pattern (per class) plus noise."""
    rng = np.random.default_rng(seed)
    pattern = np.random.default_rng(123).choice([-1.0, 1.0], size=(32, 32, 3))
    y = rng.integers(0, 2, n)
    x = np.where(y == 1, 0.04, -0.04)[:, None, None, None] * pattern + rng.normal(0, 0.2, (n, 32, 32, 3))
    return np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="module")
def trained_mlp():
    from ebm.augment import to_tensor

    torch.manual_seed(0)
    x, y = _separable_problem(512, seed=0)
    xt, yt = to_tensor(x), torch.from_numpy(y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(60):
        for i in range(0, len(y), 128):
            loss = nn.functional.cross_entropy(model(xt[i:i + 128]), yt[i:i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_lowers_accuracy_of_trained_network(trained_mlp, norm):
    x, y = _separable_problem(200, seed=1)
    kw = dict(step=1.0) if norm == "linf" else dict(step_frac=0.25)
    eps = [0, 2, 4, 5, 6, 8, 16] if norm == "linf" else [0, 100, 200, 250, 300, 400]
    acc = robust_accuracy(trained_mlp, x, y, norm=norm, eps_list=eps, steps=10, restarts=2, batch_size=64, seed=0,
                          **kw)
    assert list(acc) == [f"{e:g}" for e in eps]
    a = list(acc.values())
    assert a[0] >= 0.95  # clean accuracy of the separable problem
    assert all(b <= a_ + 1e-12 for a_, b in zip(a, a[1:]))  # decreasing in ε
    assert a[-1] < a[0] - 0.5  # a sizeable budget breaks it
    assert any(0 < v < a[0] for v in a)  # and the curve passes through intermediate values
    # deterministic given the seed
    assert robust_accuracy(trained_mlp, x, y, norm=norm, eps_list=eps, steps=10, restarts=2, batch_size=64,
                           seed=0, **kw) == acc


def test_pgd_deterministic_given_generator():
    model = _small_cnn()
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    y = torch.randint(0, 3, (8,))
    runs = [pgd(model, x, y, norm=n, eps=0.1, step=0.03, steps=3, generator=torch.Generator().manual_seed(5))
            for n in ("l2", "l2", "linf", "linf")]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[2], runs[3])


def test_robust_accuracy_eps_zero_is_clean_and_tensor_input(trained_mlp):
    from ebm.augment import to_tensor

    x, y = _separable_problem(50, seed=2)
    with torch.no_grad():
        clean = (trained_mlp(to_tensor(x)).argmax(1).numpy() == y).mean()
    acc = robust_accuracy(trained_mlp, to_tensor(x), torch.from_numpy(y), norm="linf", eps_list=[0], step=2,
                          steps=5)
    assert acc == {"0": pytest.approx(clean)}


def test_robust_accuracy_requires_its_step():
    model = _small_cnn()
    x, y = np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="step"):
        robust_accuracy(model, x, y, norm="linf", eps_list=[1], steps=1)
    with pytest.raises(ValueError, match="step_frac"):
        robust_accuracy(model, x, y, norm="l2", eps_list=[1], step=2, steps=1)


class Bump(nn.Module):
    """One pixel s; class 1 wins only near s = 0.5 (|s - 0.5| < 0.224): the attack overshoots the bump and
    oscillates across it with signed steps of 0.3, so its iterates can alternate broken / not broken."""

    def forward(self, x):
        s = x.flatten(1)[:, 0]  # (B,)
        return torch.stack([torch.zeros_like(s), 1 - 20 * (s - 0.5) ** 2], 1)  # (B, 2)


def test_an_image_is_broken_if_any_iterate_is_misclassified():
    """SADA-JEM's rule (METHODS.md §3.5): not only the last iterate counts."""
    model, y = Bump(), torch.zeros(1, dtype=torch.long)
    x = torch.full((1, 1, 1, 1), 0.15)
    kw = dict(norm="linf", eps=1.0, step=0.3, random_start=False)
    # iterates .15, .45 (broken), .75: the last one is classified correctly
    last, broken = pgd_attack(model, x, y, steps=2, **kw)
    assert last.item() == pytest.approx(0.75) and model(last).argmax(1).item() == 0
    assert broken.item()
    assert not pgd_attack(model, x - 0.3, y, steps=1, **kw)[1].item()  # -.15 and .15: never broken
    # robust_accuracy counts it: every random start in [-1, 1] reaches the bump within 12 steps
    xs = torch.zeros(200, 1, 1, 1)
    acc = robust_accuracy(model, xs, torch.zeros(200, dtype=torch.long), norm="linf", eps_list=[0, 127.5],
                          step=38.25, steps=12)
    assert acc == {"0": 1.0, "127.5": 0.0}
    lasts = pgd(model, xs, torch.zeros(200, dtype=torch.long), steps=12, norm="linf", eps=1.0, step=0.3,
                generator=torch.Generator().manual_seed(0))
    assert (model(lasts).argmax(1) == 0).float().mean() > 0.2  # the last iterate alone would say robust
