"""Hybrid generative-contrastive representation learning (after Kim, Kim & Lee 2021, arXiv 2106.06162).

No code or architecture was published; this is the reconstruction described in ``../shared/METHODS.md`` §5:
a causal ViT encoder over patches whose pooled features get SimCLR's NT-Xent over two augmented views, and
an autoregressive decoder head that models the image patch by patch (discretized-logistic likelihood,
reported in bits/dim). ``loss = w·NT-Xent + (1 − w)·bits/dim``; w = 1 is contrastive-only, w = 0
generative-only.
"""
