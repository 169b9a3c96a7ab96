import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from ebm.eval.classify import classification_metrics, expected_calibration_error, reliability_bins
from ebm.eval.ood import auroc, score_logpx, score_maxprob


def test_auroc_matches_mann_whitney():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 1, 300)
    b = np.round(rng.normal(0, 1, 200), 1)  # ties included
    u = mannwhitneyu(a, b, alternative="two-sided").statistic
    assert auroc(a, b) == pytest.approx(u / (len(a) * len(b)), abs=1e-12)
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auroc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auroc(np.ones(5), np.ones(7)) == 0.5


def test_ece_of_calibrated_predictor_is_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 200_000)
    correct = (rng.uniform(size=conf.shape) < conf).astype(float)
    assert expected_calibration_error(conf, correct, 20) < 0.01


def test_ece_hand_value():
    # 4 predictions, 2 bins: [0, .5] holds conf .3,.4 (1 correct), (.5, 1] holds .9,.9 (both wrong)
    conf = np.array([0.3, 0.4, 0.9, 0.9])
    correct = np.array([1.0, 0.0, 0.0, 0.0])
    # bin 1: |0.5 - 0.35| * 2/4 = 0.075 ; bin 2: |0 - 0.9| * 2/4 = 0.45
    assert expected_calibration_error(conf, correct, 2) == pytest.approx(0.525)
    bins = reliability_bins(conf, correct, 2)
    assert [b["count"] for b in bins] == [2, 2]


def test_classification_metrics_on_known_logits():
    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    y = np.array([0, 1, 1])
    m, _ = classification_metrics(logits, y, 10)
    assert m["accuracy"] == pytest.approx(2 / 3)
    # by hand: -log softmax = log(1 + e^-10) for the two right answers, 10 + log(1 + e^-10) for the wrong one
    assert m["nll"] == pytest.approx((10 + 3 * np.log1p(np.exp(-10))) / 3, rel=1e-6)


def test_scores():
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    assert score_logpx(logits)[0] == pytest.approx(np.log(2))
    assert score_maxprob(logits).tolist() == pytest.approx([0.5, 1 / (1 + np.exp(-10))])


def test_grad_norm_score_matches_finite_differences():
    from ebm.eval.ood import score_grad_norm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5, dtype=torch.float64), torch.nn.Tanh(),
                                torch.nn.Linear(5, 3, dtype=torch.float64))
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    got = score_grad_norm(model, x)
    eps = 1e-6
    for b in range(2):
        grad = np.zeros(12)
        for i in range(12):
            d = torch.zeros(12, dtype=torch.float64)
            d[i] = eps
            xp, xm = x[b].flatten() + d, x[b].flatten() - d
            f = lambda v: torch.logsumexp(model(v.view(1, 3, 2, 2)), 1).item()  # noqa: E731
            grad[i] = (f(xp) - f(xm)) / (2 * eps)
        assert got[b] == pytest.approx(-np.linalg.norm(grad), rel=1e-6)


def test_roc_curve_area_equals_auroc():
    from ebm.eval.ood import roc_curve

    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, 400), rng.normal(0, 1, 300)
    fpr, tpr = roc_curve(a, b)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and (np.diff(fpr) >= 0).all()
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(a, b), abs=1e-12)  # exact curve: same area
    fq, tq = roc_curve(a, b, max_points=101)
    assert len(fq) <= 103 and np.trapezoid(tq, fq) == pytest.approx(auroc(a, b), abs=0.02)


def test_test_noise_is_drawn_afresh_on_every_pass_and_seeded():
    """JEM's test transform adds N(0, σ²) each time an image is read: two passes over the same images see
    different noise (here: a model that returns its input's first pixel); the whole run is seeded."""
    from ebm.eval.classify import predict_logits

    model = torch.nn.Flatten()
    x = np.full((6, 32, 32, 3), 128, dtype=np.uint8)
    kw = dict(batch_size=4, device=torch.device("cpu"), noise=0.03, progress=False)
    g = torch.Generator().manual_seed(0)
    first, second = predict_logits(model, x, generator=g, **kw), predict_logits(model, x, generator=g, **kw)
    assert not torch.equal(first, second)
    assert 0.01 < (first - 128 / 127.5 + 1).std() < 0.05
    again = predict_logits(model, x, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(first, again)
    assert torch.equal(predict_logits(model, x, **{**kw, "noise": 0.0}), predict_logits(model, x, **{**kw, "noise": 0.0}))
