"""The schema of ``params.yaml``: one frozen dataclass per section, and the names the sections may use.
No defaults: every tunable is written in ``params.yaml`` so that ``dvc params diff`` shows it (comments give
units and the papers' values).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ebm.config.train_schema import (OBJECTIVES, AugmentConfig, HdgeConfig, HdgeJemConfig, JemConfig,  # noqa: F401
                                     JemppConfig, SadaJemConfig, SoftmaxConfig, TrainCommon, TrainConfig)

DATASETS = ("shapes", "cifar10", "cifar100", "svhn")
OOD_SETS = ("textures", "interp", "noise", "cifar10", "cifar100", "svhn", "celeba")
# plus "local:<name>": any image folder at data/raw/ood/<name>/ (letters, digits, _ and - in <name>)
LOCAL_OOD = re.compile(r"local:[A-Za-z0-9_-]+")
# image corruptions of the pretraining evaluation (implemented in ebm/pretrain/corruptions.py)
CORRUPTIONS = ("gaussian_noise", "shot_noise", "gaussian_blur", "contrast", "brightness", "jpeg", "pixelate")


@dataclass(frozen=True)
class DataConfig:
    """One dataset. ``source``: ``procedural`` (the embedded ``shapes`` set, no files), ``torchvision``
    (download when online, checksums verified) or ``local`` (folder of class subfolders or .tar.gz of them)."""
    source: Literal["procedural", "torchvision", "local"]
    n_train: int  # training images kept (0 = all); a stratified, seeded subset
    n_test: int  # test images kept (0 = all)
    n_ood: int  # images per OOD set (0 = as many as the test set)
    ood: list[str]  # OOD sets written beside the dataset: names from OOD_SETS, or local:<name> (data/raw/ood/<name>/)
    seed: int  # seed of the procedural generator and of the subset selection


@dataclass(frozen=True)
class ModelConfig:
    """Wide-ResNet as in the JEM code: pre-activation blocks, LeakyReLU, optional norm/dropout."""
    arch: Literal["wrn"]
    depth: int  # 6n+4 (10, 16, 28, ...)
    width: int  # widen factor k: stage widths 16k, 32k, 64k
    norm: Literal["none", "batch", "group", "instance"]
    dropout: float  # dropout probability between the two convs of a block
    leak: float  # LeakyReLU negative slope (JEM: 0.2)
    init: Literal["pytorch", "kaiming"]  # conv init: PyTorch defaults (JEM code) or Kaiming-normal, zero bias


@dataclass(frozen=True)
class PretrainConfig:
    """Hybrid generative-contrastive pretraining (after Kim, Kim & Lee 2021): a causal ViT over patches
    whose pooled features get NT-Xent over two augmented views, and an autoregressive decoder head whose
    NLL (bits/dim) is the generative loss. loss = w·NT-Xent + (1 − w)·bits/dim for each w in
    ``contrastive_weights`` (w = 1: contrastive only; w = 0: generative only)."""
    seed: int
    steps: int  # optimizer steps per weight
    batch_size: int  # images per step (each seen as two augmented views + once clean)
    lr: float  # AdamW peak learning rate
    weight_decay: float
    warmup_steps: int  # linear warm-up, then cosine decay to 0
    patch_size: int  # pixels per patch side (32 must be a multiple)
    dim: int  # transformer width
    encoder_depth: int  # causal transformer blocks of the encoder
    decoder_depth: int  # causal transformer blocks of the decoder head
    heads: int  # attention heads
    mixtures: int  # discretized-logistic mixture components per sub-pixel
    contrastive_weights: list[float]  # w in [0, 1]; one model per value
    temperature: float  # NT-Xent tau
    crop_scale: float  # smallest area fraction of the random resized crop
    color_jitter: float  # brightness/contrast/saturation jitter strength
    probe_steps: int  # full-batch L-BFGS/Adam steps of the linear probe on frozen features
    probe_lr: float
    knn_k: int  # representation OOD score: mean cosine similarity to the k nearest training features
    corruptions: list[str]  # names from ebm.pretrain.corruptions.CORRUPTIONS
    severities: list[int]  # 1..5
    eval_batch_size: int


@dataclass(frozen=True)
class GenerateConfig:
    """Samples from each model with its own sampler and init (JEM: SGLD from U(-1, 1); JEM++/SADA-JEM: clipped,
    projected steps from the class Gaussians; softmax, hdge: JEM's SGLD), plus the replay buffer if it has one.
    ``mode``: ``fresh`` chains from the init, or ``persistent`` (JEM's recipe: ``calls`` calls on a buffer)."""
    seed: int
    mode: Literal["fresh", "persistent"]
    n_samples: int  # fresh chains, or the persistent buffer's size; the IS/FID sample size (papers: 10,000)
    n_per_class: int  # fresh class-conditional chains per class
    calls: int  # persistent mode: sampler calls on the buffer (JEM README: >= 1,000)
    reinit_freq: float  # persistent mode: chance a drawn chain restarts from the init (JEM: 0.05)
    sgld_steps: int  # steps per chain (fresh) or per call (persistent) (JEM README: 40)
    sgld_lr: float  # step size of objectives without a sampler of their own (softmax, hdge)
    sgld_std: float  # noise of those
    batch_size: int  # chains advanced at once


@dataclass(frozen=True)
class EvaluateConfig:
    seed: int
    batch_size: int
    ece_bins: int  # equal-width confidence bins (papers: 20)
    test_noise: float  # std of Gaussian noise added to test and OOD images (JEM code: 0.03)
    pgd_images: int  # test images attacked (SADA-JEM: 1,000); 0 = no robustness evaluation
    pgd_steps: int  # PGD iterations (SADA-JEM: 50, JEM: 40)
    pgd_restarts: int  # random restarts; an image counts as robust only if it survives all of them
    pgd_linf_eps: list[float]  # L-inf budgets in 1/255 of the [0, 1] pixel range (SADA-JEM: 1..30)
    pgd_linf_step: float  # L-inf step, same units (SADA-JEM: 2)
    pgd_l2_eps: list[float]  # L2 budgets in 1/255 of the [0, 1] range (HybViT: 50..400)
    pgd_l2_step_frac: float  # L2 step as a fraction of eps (2.5 · eps / steps is Madry's rule)
    fid_reference: Literal["train", "test"]  # real images FID compares with (JEM++/SADA-JEM: train + test)
    fid_real_images: int  # real images for FID statistics (0 = all of the reference split)
    inception_weights: str  # "" = torch-fidelity's download; else a local weights file (env EBM_INCEPTION_WEIGHTS wins)


@dataclass(frozen=True)
class Params:
    objectives: list[str]
    datasets: list[str]
    data: dict[str, DataConfig]
    model: ModelConfig
    train: TrainConfig
    pretrain: PretrainConfig
    generate: GenerateConfig
    evaluate: EvaluateConfig
    runs: dict[str, dict]  # named runs: objective, dataset and overrides (ebm/config/runs.py)
