import torch

from ebm.informative_init import ClassGaussians


def test_class_gaussians_match_per_class_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    n, shape = 4000, (1, 2, 2)  # D = 4
    y = torch.arange(n) % 2
    a = torch.randn(4, 4, generator=g) * 0.1
    x = torch.randn(n, 4, generator=g) @ a.t() * 0.5
    x[y == 1] = x[y == 1] * 2 + 0.3  # two classes, different mean and covariance
    x = x.view(n, *shape)
    model = ClassGaussians.fit(x, y, 2, jitter=0.0, clamp=False)
    for c in (0, 1):
        data = x[y == c].reshape(-1, 4)
        assert torch.allclose(model.mean[c], data.mean(0), atol=1e-6)
        s = model.sample(200_000, classes=torch.full((200_000,), c), generator=g).reshape(-1, 4)
        assert torch.allclose(s.mean(0), data.mean(0), atol=3e-3)
        assert torch.allclose(torch.cov(s.t()), torch.cov(data.t()), atol=2e-3, rtol=0.03)


def test_samples_are_clamped_to_the_image_box():
    x = torch.randn(100, 1, 2, 2) * 3
    y = torch.arange(100) % 2
    s = ClassGaussians.fit(x, y, 2).sample(500)
    assert s.shape == (500, 1, 2, 2) and s.min() >= -1 and s.max() <= 1
