"""The ``train`` section of ``params.yaml``: settings every objective shares, augmentation per dataset, and one
frozen dataclass per objective (split from :mod:`ebm.config.schema`, which re-exports them)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TrainCommon:
    """Settings shared by every objective."""
    seed: int
    steps: int  # optimizer steps
    batch_size: int  # labelled images per step (cross-entropy branch)
    optimizer: Literal["adam", "sgd"]
    lr: float  # peak learning rate
    momentum: float  # SGD momentum (ignored by Adam)
    weight_decay: float
    warmup_steps: int  # linear warm-up from 0 over this many steps
    decay_at: list[float]  # fractions of `steps` at which lr is multiplied by `decay_factor`
    decay_factor: float
    data_noise: float  # std of Gaussian noise added to training images, in [-1, 1] pixel units
    diverge_threshold: float  # |loss| above this counts as divergence
    energy_gap_threshold: float  # |mean E(data) - mean E(samples)| above this counts as divergence
    max_retries: int  # roll-backs after divergence before the run stops with DivergenceError
    retry_lr_factor: float  # lr multiplier applied at each roll-back


@dataclass(frozen=True)
class SoftmaxConfig:
    """Plain classifier: cross-entropy only."""
    label_smoothing: float


@dataclass(frozen=True)
class PxSchedule:
    """When the p(x) term of a JEM-family objective is on (ebm/objectives/jem.py); its sections' first keys.
    All three are fractions of ``train.common.steps``, so a schedule means the same at any budget."""
    px_start: float  # fraction of the steps before the p(x) term starts (0 = from the first step, the papers)
    px_ramp: float  # fraction of the steps over which its weight then rises linearly to px_weight (0 = at once)
    px_until: float  # fraction of the steps after which the term is off again (1 = to the end, the papers)

    def px_steps(self, steps: int) -> tuple[int, int, int]:
        """(first step with the p(x) term, steps its ramp lasts, first step without it again) in a run of
        ``steps``: each fraction times ``steps``, rounded (px_until 1 gives ``steps``)."""
        return round(self.px_start * steps), round(self.px_ramp * steps), round(self.px_until * steps)


@dataclass(frozen=True)
class SplitStep:
    """Whether the cross-entropy and the rest of an objective's loss share one optimizer state; a key of every
    objective with a term besides the cross-entropy (ebm/train.py, :class:`~ebm.train.SplitOptimizer`)."""
    split_optimizer: float  # 0 = one optimizer for the whole loss (the papers); s > 0 = an optimizer state
    # each for the CE and the rest (p(x), energy penalty, contrastive terms), the rest's lr s × the CE's


@dataclass(frozen=True)
class JemConfig(PxSchedule, SplitStep):
    """JEM (Grathwohl et al. 2020): CE + maximum likelihood of p(x) with PCD-SGLD."""
    px_weight: float  # weight of the log p(x) surrogate
    pxy_weight: float  # weight of the optional log p(x|y) term with class-conditional chains (paper: 0)
    sgld_steps: int  # K, SGLD steps per training step
    sgld_lr: float  # alpha, step size on grad_x log p~(x)
    sgld_std: float  # sigma, Langevin noise std
    buffer_size: int  # persistent replay buffer size (images)
    reinit_freq: float  # probability a chain restarts from U(-1, 1)
    sample_batch_size: int  # chains advanced per training step
    energy_l2: float  # weight of (E(x+)^2 + E(x~)^2), 0 = off (JEM default)
    init: Literal["informative", "uniform"]  # chains start from U(-1, 1) (JEM) or class Gaussians (JEM++)
    init_jitter: float  # informative init: added to each class covariance's diagonal


@dataclass(frozen=True)
class JemppConfig(PxSchedule, SplitStep):
    """JEM++ (Yang & Ji 2021): JEM with informative init and proximal (clipped, projected) SGLD."""
    px_weight: float
    pxy_weight: float  # weight of the optional log p(x|y) term with class-conditional chains (paper: 0)
    sgld_steps: int  # M outer steps (paper script: 10)
    sgld_lr: float  # step per outer step = N inner steps × inner lr (5 × 0.2 = 1.0)
    sgld_std: float  # Langevin noise (released config: 0)
    grad_clip: float  # per-pixel gradient clip (1.0); 0 = off
    buffer_size: int
    reinit_freq: float
    sample_batch_size: int
    energy_l2: float
    init: Literal["informative", "uniform"]  # class-conditional Gaussians fitted on the data, or U(-1, 1)
    init_jitter: float  # added to each class covariance's diagonal (1e-4)
    sample_mode: Literal["train", "eval"]  # model mode while sampling (JEM++: train, BN batch stats)


@dataclass(frozen=True)
class SadaJemConfig(PxSchedule, SplitStep):
    """SADA-JEM (Yang, Su & Ji 2023): JEM++'s sampler with K=5, SAM, no augmentation in the p(x) branch."""
    px_weight: float
    pxy_weight: float  # weight of the optional log p(x|y) term with class-conditional chains (paper: 0)
    sgld_steps: int  # K (paper script: 5)
    sgld_lr: float
    sgld_std: float
    grad_clip: float
    buffer_size: int
    reinit_freq: float
    sample_batch_size: int
    energy_l2: float  # code's l2_coeff, 0 in the paper recipe
    init: Literal["informative", "uniform"]
    init_jitter: float
    sample_mode: Literal["train", "eval"]
    rho: float  # SAM neighbourhood radius (code default 2.0)
    adaptive: bool  # ASAM (the code switches it on for rho >= 0.5)


@dataclass(frozen=True)
class HdgeConfig(SplitStep):
    """HDGE (Liu & Abbeel 2020): CE + contrastive approximation of log q(x|y) over a logit memory."""
    ce_weight: float  # weight of cross-entropy (code: --pyxce 1)
    contrast_weight: float  # weight of the contrastive term (code: --pxycontrast 1)
    temperature: float  # tau (paper/code: 0.1)
    queue_size: int  # K stored negatives (paper: 65,536)
    normalisation: Literal["l2", "softmax"]  # of logits over classes before contrasting (code: l2)
    positive: Literal["compressed", "direct"]  # log(e^z_y + C - 1) as paper+code, or z_y as the formula


@dataclass(frozen=True)
class HdgeJemConfig(PxSchedule, SplitStep):
    """HDGE + JEM's SGLD maximum-likelihood term ("UDGE + marginal likelihood")."""
    ce_weight: float
    contrast_weight: float
    temperature: float
    queue_size: int
    normalisation: Literal["l2", "softmax"]
    positive: Literal["compressed", "direct"]
    px_weight: float
    sgld_steps: int
    sgld_lr: float
    sgld_std: float
    buffer_size: int
    reinit_freq: float
    sample_batch_size: int
    energy_l2: float
    init: Literal["informative", "uniform"]  # chains start from U(-1, 1) (JEM) or class Gaussians (JEM++)
    init_jitter: float  # informative init: added to each class covariance's diagonal


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation of one dataset (both branches; SADA-JEM's p(x) branch never)."""
    crop: bool  # reflect-pad 4 + random crop back to 32 (all four papers)
    flip: bool  # random horizontal flip (CIFAR: yes; SVHN: no, digits are not mirror-symmetric)


@dataclass(frozen=True)
class TrainConfig:
    common: TrainCommon
    augment: dict[str, AugmentConfig]  # per dataset
    softmax: SoftmaxConfig
    jem: JemConfig
    jempp: JemppConfig
    sada_jem: SadaJemConfig
    hdge: HdgeConfig
    hdge_jem: HdgeJemConfig


# the objectives: the sub-sections of `train` but `common` and `augment` (ebm/objectives/REGISTRY must match)
OBJECTIVES = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("common", "augment"))
