"""SGLD and the persistent replay buffer (PCD), shared by training objectives and the generate stage.

SGLD as in the JEM code (ascent on log p~(x) = logsumexp_y f(x)[y], or on f(x)[y] when conditional):

    x_{k+1} = x_k + α ∇_x log p~(x_k) + σ ε,   ε ~ N(0, I)

with α = ``lr`` and σ = ``std`` set independently (the papers' code does not use σ = sqrt(2α)).
The loop never reads a value back to the host, so on a GPU it queues without synchronising.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from ebm.distributed import no_sync
from ebm.models import log_px


@contextlib.contextmanager
def model_mode(model: nn.Module, train: bool) -> Iterator[None]:
    """Temporarily set train/eval mode (JEM samples in eval(); JEM++ keeps train())."""
    was = model.training
    model.train(train)
    try:
        yield
    finally:
        model.train(was)


def sgld(model: nn.Module, x0: torch.Tensor, *, steps: int, lr: float, std: float,
         y: torch.Tensor | None = None, grad_clip: float = 0.0, clamp: bool = False,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Run ``steps`` SGLD steps from ``x0`` (B, 3, H, W); returns detached samples. Model gradients
    are not accumulated: only ∂/∂x is taken.

    ``grad_clip`` > 0 clips the gradient per pixel to ±grad_clip and ``clamp`` projects x onto [-1, 1]
    after each step: JEM++'s proximal SGLD and SADA-JEM's sampler,
    x_{k+1} = clip_{[-1,1]}(x_k + α clip(∇, ±c) + σ ε). JEM++'s PYLD-M-N equals M such steps of size
    N·lr_inner, because its inner steps reuse one input gradient (METHODS.md §2.2, §8.15)."""
    x = x0.detach().clone()
    with no_sync(model):  # under DDP: input gradients only, nothing to all-reduce
        for _ in range(steps):
            x.requires_grad_(True)
            logits = model(x)  # (B, C)
            score = log_px(logits) if y is None else logits.gather(1, y[:, None]).squeeze(1)  # (B,)
            (grad,) = torch.autograd.grad(score.sum(), x)
            if grad_clip > 0:
                grad = grad.clamp(-grad_clip, grad_clip)
            x = x.detach() + lr * grad
            if std > 0:
                x = x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            if clamp:
                x = x.clamp(-1, 1)
    return x.detach()


@dataclass(frozen=True)
class ChainSampler:
    """How one objective moves its chains: the initial distribution ``init(n, classes=None)`` and the
    step rule (``sgld`` with its step size, noise, clipping, projection and model mode). Training and the
    generate stage share it, so samples are drawn as the model was trained."""
    init: Callable[..., torch.Tensor]
    lr: float
    std: float
    grad_clip: float = 0.0
    clamp: bool = False
    train_mode: bool = False
    name: str = "SGLD"  # for captions

    def run(self, model: nn.Module, x0: torch.Tensor, *, steps: int, y: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
        with model_mode(model, train=self.train_mode):
            return sgld(model, x0, steps=steps, lr=self.lr, std=self.std, y=y, grad_clip=self.grad_clip,
                        clamp=self.clamp, generator=generator)


def uniform_init(n: int, shape: tuple[int, ...], device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """U(-1, 1) images, (n, *shape)."""
    return torch.rand((n, *shape), device=device, generator=generator) * 2 - 1


class ReplayBuffer:
    """Persistent chains for PCD-SGLD. ``sample`` draws indices uniformly with replacement and restarts
    each drawn chain from ``init`` with probability ``reinit_freq``; ``push`` writes the advanced chains
    back to the same indices.

    Class-conditional chains (JEM's p(x|y) term, as its code does it): with ``n_classes`` > 1 the buffer
    is also split into ``n_classes`` equal partitions, class c owning rows [c·m, (c+1)·m), m = size // C;
    ``sample(n, classes=y)`` draws each chain from its class's partition. Unconditional draws still use
    the whole buffer. ``init(n)`` draws n images; ``init(n, classes)`` (used when ``n_classes`` > 1)
    draws them for the given classes (JEM++'s class Gaussians; U(-1, 1) ignores the classes)."""

    def __init__(self, size: int, shape: tuple[int, ...], *, reinit_freq: float,
                 init: Callable[..., torch.Tensor], n_classes: int = 1):
        self.size, self.shape, self.reinit_freq, self.init = size, shape, reinit_freq, init
        self.n_classes = n_classes
        self.per_class = size // n_classes  # rows of one class partition
        self.buffer = self._init(torch.arange(size))  # (N, *shape)

    def _init(self, idx: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Fresh images for buffer rows ``idx`` (of the rows' partition classes when conditional)."""
        if self.n_classes == 1:
            return self.init(len(idx))
        if classes is None:
            classes = (idx // self.per_class).clamp_max(self.n_classes - 1)  # (n,) partition of each row
        return self.init(len(idx), classes)

    def sample(self, n: int, classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` chains: (indices (n,), images (n, *shape)); ``classes`` (n,) draws from class partitions."""
        dev = self.buffer.device
        if classes is None:
            idx = torch.randint(0, self.size, (n,), device=dev)  # (n,)
        else:
            if self.n_classes == 1:
                raise ValueError("class-conditional draws need a buffer built with n_classes > 1")
            idx = classes.to(dev) * self.per_class + torch.randint(0, self.per_class, (n,), device=dev)  # (n,)
        x = self.buffer[idx]  # (n, *shape)
        fresh = (torch.rand(n, device=dev) < self.reinit_freq).view(n, *([1] * len(self.shape)))
        x = torch.where(fresh, self._init(idx, classes).to(dev), x)  # no host sync: both branches computed
        return idx, x

    def push(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        """Write ``x[i]`` to ``buffer[idx[i]]``. ``idx`` may repeat (it is drawn with replacement); a plain
        ``buffer[idx] = x`` then lets parallel writers race, so which chain survives varies from run to run
        (CPU threads under load, CUDA). The last occurrence wins, as in a sequential loop: every duplicate
        writes that same row, so the result is deterministic, with no host sync."""
        pos = torch.arange(len(idx), device=idx.device)  # (n,)
        last = torch.full((self.size,), -1, dtype=pos.dtype, device=idx.device)
        last.scatter_reduce_(0, idx, pos, reduce="amax")  # (N,) last position that writes each row
        self.buffer[idx] = x.detach().to(self.buffer.dtype)[last[idx]]

    def reset(self) -> None:
        """Every chain restarts from ``init`` (after a divergence)."""
        self.buffer = self._init(torch.arange(self.size, device=self.buffer.device)).to(self.buffer.device)

    def to(self, device: torch.device | str) -> "ReplayBuffer":
        self.buffer = self.buffer.to(device)
        return self

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        buf = state["buffer"]
        if tuple(buf.shape) != (self.size, *self.shape):
            raise ValueError(f"replay buffer shape {tuple(buf.shape)} != expected {(self.size, *self.shape)}")
        self.buffer = buf.to(self.buffer.device)
