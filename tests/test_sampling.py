import torch
from torch import nn

from ebm.sampling import ReplayBuffer, sgld, uniform_init


class Quadratic(nn.Module):
    """One "logit" = -|x - mu|^2 / 2, so log p~(x) = -|x - mu|^2 / 2: a unit Gaussian around mu."""

    def __init__(self, mu: float):
        super().__init__()
        self.mu = mu

    def forward(self, x):
        return -0.5 * ((x - self.mu) ** 2).flatten(1).sum(1, keepdim=True)


def test_sgld_lowers_a_quadratic_energy():
    model = Quadratic(0.5)
    x0 = uniform_init(64, (3, 4, 4), generator=torch.Generator().manual_seed(0))
    x = sgld(model, x0, steps=50, lr=0.1, std=0.01)
    e0, e1 = -model(x0).mean(), -model(x).mean()
    assert e1 < 0.05 * e0
    assert (x.mean() - 0.5).abs() < 0.05


def test_sgld_does_not_touch_parameter_grads():
    lin = nn.Linear(12, 3)
    x = sgld(lambda z: lin(z.flatten(1)), torch.zeros(4, 3, 2, 2), steps=3, lr=1.0, std=0.0)
    assert lin.weight.grad is None and x.shape == (4, 3, 2, 2)


def test_replay_buffer_reinit_fraction_and_writeback():
    torch.manual_seed(0)
    buf = ReplayBuffer(1000, (1,), reinit_freq=0.2, init=lambda n: torch.full((n, 1), -7.0))
    buf.buffer = torch.arange(1000.0)[:, None]
    fresh = 0
    for _ in range(50):
        idx, x = buf.sample(200)
        fresh += int((x == -7.0).sum())
        assert torch.equal(x[x != -7.0], buf.buffer[idx][x != -7.0])
    assert abs(fresh / (50 * 200) - 0.2) < 0.02
    idx = torch.tensor([3, 5])
    buf.push(idx, torch.tensor([[1.5], [2.5]]))
    assert buf.buffer[3].item() == 1.5 and buf.buffer[5].item() == 2.5
    state = buf.state_dict()
    other = ReplayBuffer(1000, (1,), reinit_freq=0.2, init=lambda n: torch.zeros(n, 1))
    other.load_state_dict(state)
    assert torch.equal(other.buffer, buf.buffer)


def test_replay_buffer_push_with_repeated_indices_is_deterministic_last_write_wins():
    """Indices are drawn with replacement, so a push repeats some of them: the last occurrence wins, as a
    sequential loop would do, whatever the threads do (a racy write made resumed runs differ)."""
    g = torch.Generator().manual_seed(0)
    size, n = 7, 200_000  # many repeats of each row, large enough for a multi-threaded write
    idx = torch.randint(0, size, (n,), generator=g)
    x = torch.randn(n, 3, generator=g)
    want = torch.zeros(size, 3)
    for r in range(size):
        want[r] = x[(idx == r).nonzero()[-1, 0]]
    for _ in range(5):
        buf = ReplayBuffer(size, (3,), reinit_freq=0.0, init=lambda m: torch.zeros(m, 3))
        buf.push(idx, x)
        assert torch.equal(buf.buffer, want)


class Gaussian2D(nn.Module):
    """log p~(x) = -(x - mu)ᵀ Σ⁻¹ (x - mu) / 2 on flattened 2-D inputs, as a single logit."""

    def __init__(self, mu, cov):
        super().__init__()
        self.mu, self.prec = mu, torch.linalg.inv(cov)

    def forward(self, x):
        d = x.flatten(1) - self.mu  # (B, 2)
        return -0.5 * ((d @ self.prec) * d).sum(1, keepdim=True)


def test_calibrated_langevin_matches_gaussian_mean_and_covariance():
    torch.manual_seed(0)
    mu = torch.tensor([0.5, -0.3])
    cov = torch.tensor([[0.30, 0.12], [0.12, 0.20]])
    model = Gaussian2D(mu, cov)
    alpha = 0.01  # with σ = sqrt(2α) SGLD is the (unadjusted) Langevin algorithm
    x = sgld(model, torch.zeros(4000, 2), steps=1500, lr=alpha, std=(2 * alpha) ** 0.5)
    # tolerance: Monte-Carlo error (≈ 0.01) plus the O(α) discretisation bias of the covariance
    assert torch.allclose(x.mean(0), mu, atol=0.03)
    assert torch.allclose(torch.cov(x.t()), cov, atol=0.03)


def test_clipped_projected_steps_stay_in_the_box_and_move_at_most_lr():
    lin = nn.Linear(12, 2)
    x0 = torch.rand(16, 3, 2, 2) * 2 - 1
    x = sgld(lambda z: lin(z.flatten(1)) * 100, x0, steps=1, lr=0.3, std=0.0, grad_clip=1.0, clamp=True)
    assert x.min() >= -1 and x.max() <= 1
    assert (x - x0).abs().max() <= 0.3 + 1e-6


def test_class_conditional_draws_come_from_their_class_partition_and_reinit_with_their_class():
    calls = []

    def init(n, classes=None):
        calls.append(classes)
        return (classes.float() if classes is not None else torch.full((n,), -1.0))[:, None] + 100

    buf = ReplayBuffer(30, (1,), reinit_freq=0.5, init=init, n_classes=3)  # 10 rows per class
    assert torch.equal(buf.buffer[:, 0], torch.arange(30) // 10 + 100.0)  # each partition starts from its class
    buf.buffer = torch.arange(30.0)[:, None]
    y = torch.tensor([0, 1, 2] * 100)
    idx, x = buf.sample(len(y), classes=y)
    assert torch.equal(idx // 10, y)
    fresh = x[:, 0] >= 100
    assert 0.3 < fresh.float().mean() < 0.7
    assert torch.equal(x[fresh, 0], y[fresh] + 100.0)  # re-initialised for the chain's own class
    assert torch.equal(x[~fresh, 0], idx[~fresh].float())
