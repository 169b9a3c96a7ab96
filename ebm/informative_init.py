"""JEM++'s informative sampler initialisation (Yang & Ji 2021): one Gaussian per class fitted on the
training images (in [-1, 1] space) with full covariance Σ_c + jitter·I; samples are clamped to [-1, 1].
A chain re-initialised from it starts near the data instead of from uniform noise."""
from __future__ import annotations

import torch


class ClassGaussians:
    def __init__(self, mean: torch.Tensor, chol: torch.Tensor, shape: tuple[int, ...], clamp: bool = True):
        self.mean, self.chol, self.shape, self.clamp = mean, chol, shape, clamp  # (C, D), (C, D, D)

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, n_classes: int, *, jitter: float = 1e-4,
            clamp: bool = True) -> "ClassGaussians":
        """x (N, *shape) float, y (N,) labels. Covariance is the unbiased sample covariance."""
        shape = tuple(x.shape[1:])
        flat = x.reshape(len(x), -1).double()  # (N, D)
        means, chols = [], []
        for c in range(n_classes):
            xc = flat[y == c]
            if len(xc) < 2:
                raise ValueError(f"class {c} has {len(xc)} images; a covariance needs at least 2")
            mu = xc.mean(0)
            cov = torch.cov(xc.t()) + jitter * torch.eye(xc.shape[1], dtype=xc.dtype)  # (D, D)
            means.append(mu)
            chols.append(torch.linalg.cholesky(cov))
        return cls(torch.stack(means).float(), torch.stack(chols).float(), shape, clamp)

    def sample(self, n: int, classes: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, *shape) samples; classes uniformly at random unless given."""
        dev = self.mean.device
        if classes is None:
            classes = torch.randint(0, len(self.mean), (n,), device=dev, generator=generator)
        z = torch.randn(n, self.mean.shape[1], device=dev, generator=generator)  # (n, D)
        x = torch.empty_like(z)
        for c in torch.unique(classes).tolist():  # per class: never materialise one (D, D) factor per sample
            sel = classes == c
            x[sel] = self.mean[c] + z[sel] @ self.chol[c].t()  # (n_c, D)
        x = x.view(n, *self.shape)
        return x.clamp(-1, 1) if self.clamp else x

    def to(self, device: torch.device | str) -> "ClassGaussians":
        self.mean, self.chol = self.mean.to(device), self.chol.to(device)
        return self
