"""JEM++: "Improved Techniques for Training JEM" (Yang & Ji, ICCV 2021, arXiv:2109.09032).

The objective is JEM's,

    L = CE(f(x_lab), y) + px_weight · [ -mean LSE f(x+) + mean LSE f(x~) ]  (+ energy_l2 · ...)

with two changes to how x~ is drawn:

* informative initialisation: chains (re)start from N(μ_c, Σ_c + jitter·I) of a random class c,
  fitted on the training images, clamped to [-1, 1], instead of U(-1, 1);
* proximal SGLD: x_{k+1} = clip_{[-1,1]}(x_k + α clip(∇_x LSE f(x_k), ±1)), no noise in the released
  configuration. PYLD-M-N (YOPO inner steps) equals M such steps with α = N × inner lr, because the
  inner steps reuse one input gradient (see METHODS.md §2.2).

Fewer steps (M = 10 instead of K = 20) and batch norm in train mode during sampling follow from it.
"""
from __future__ import annotations

from ebm.objectives.jem import JEM


class JEMPP(JEM):
    name = "jempp"
    clamp = True

    @property
    def grad_clip(self) -> float:  # type: ignore[override]
        return self.cfg.grad_clip
