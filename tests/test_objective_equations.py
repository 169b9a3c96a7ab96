"""Each objective's loss against its paper's equation (METHODS.md §1.1, §2.1, §3.1, §4.1), written out
here independently of ebm/objectives: a tiny fixed model, fixed data and a sampler stubbed to return
fixed negatives, so only the equation is under test. Value AND parameter gradient must agree to float
tolerance; the weights are all different and none is 1, so a flipped sign, a swapped term or a wrong
weight fails. Also: with px_weight 0 the JEM family reduces exactly to its discriminative part."""
import dataclasses

import pytest
import torch
from torch import nn

from ebm.config import parse_params
from ebm.objectives import build_objective
from ebm.objectives.base import Batch
from tests.conftest import tiny_params_dict

SHAPE, C = (3, 4, 4), 5
W = dict(px_weight=0.7, pxy_weight=0.45, energy_l2=0.3, ce_weight=1.3, contrast_weight=0.6)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.Tanh(), nn.Linear(8, C))


def _fixed():
    g = torch.Generator().manual_seed(1)
    x = lambda n: torch.rand((n, *SHAPE), generator=g) * 2 - 1  # noqa: E731
    y = torch.tensor([0, 1, 2, 3, 4, 1])
    return dict(batch=Batch(x_lab=x(6), y=y, x_px=x(7), x_px_clean=x(7)), x_fake=x(4), x_fake_y=x(6),
                negatives=torch.randn(9, C, generator=g), data=(x(20), torch.arange(20) % C))


def _objective(name: str, data, **cfg):
    p = parse_params(tiny_params_dict())
    section = getattr(p.train, name)
    keys = {f.name for f in dataclasses.fields(section)}
    section = dataclasses.replace(section, **{k: v for k, v in {**W, **cfg}.items() if k in keys})
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, **{name: section}))
    return build_objective(name, p, n_classes=C, image_shape=SHAPE, data=data)


def _stub_sampler(jem, x_fake, x_fake_y, batch):
    def sample(model, y=None):
        if y is None:
            return x_fake
        assert torch.equal(y, batch.y)  # p(x|y) chains run with the labelled batch's own labels
        return x_fake_y
    jem.sample = sample


# ---- the papers' equations, written out ----------------------------------------------------------

def lse(model, x):
    return torch.logsumexp(model(x), dim=1)  # log p~(x) = LSE_y f(x)[y]


def cross_entropy(model, x, y):
    logits = model(x)
    return (torch.logsumexp(logits, 1) - logits[torch.arange(len(y)), y]).mean()  # -log softmax(f(x))_y


def jem_equation(model, b, x_fake, x_fake_y, x_pos, *, px_weight, pxy_weight, energy_l2):
    """METHODS §1.1: CE + w_px·[-(mean LSE f(x⁺) − mean LSE f(x̃))] + w_pxy·[-(mean f(x)[y] − mean f(x̃_y)[y])]
    + l2·((mean LSE f(x⁺))² + (mean LSE f(x̃))²)."""
    pos, neg = lse(model, x_pos).mean(), lse(model, x_fake).mean()
    i = torch.arange(len(b.y))
    l_pxy = -(model(b.x_lab)[i, b.y].mean() - model(x_fake_y)[i, b.y].mean())
    return (cross_entropy(model, b.x_lab, b.y) + px_weight * -(pos - neg) + pxy_weight * l_pxy
            + energy_l2 * (pos ** 2 + neg ** 2))


def hdge_equation(model, b, negatives, *, ce_weight, contrast_weight, positive, temperature=0.1):
    """METHODS §4.1-4.2: w_ce·CE + w_c·mean_i −log(e^{s⁺_i/τ} / (e^{s⁺_i/τ} + Σ_k e^{s⁻_ik/τ})) with ẑ the
    L2-normalised logits, s = log(e^{ẑ_y} + C − 1) (compressed) or ẑ_y (direct)."""
    z = model(b.x_lab)
    zn, qn = z / z.norm(dim=1, keepdim=True), negatives / negatives.norm(dim=1, keepdim=True)
    form = (lambda v: torch.log(torch.exp(v) + C - 1)) if positive == "compressed" else (lambda v: v)
    terms = []
    for i, yi in enumerate(b.y.tolist()):
        s_pos, s_neg = form(zn[i, yi]), form(qn[:, yi])  # scalar, (K,)
        all_ = torch.cat([s_pos[None], s_neg]) / temperature
        terms.append(-(s_pos / temperature - torch.logsumexp(all_, 0)))
    return ce_weight * cross_entropy(model, b.x_lab, b.y) + contrast_weight * torch.stack(terms).mean()


def _value_and_grad(model, fn):
    model.zero_grad()
    value = fn()
    value.backward()
    return value.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_same(model, got_fn, want_fn):
    v1, g1 = _value_and_grad(model, got_fn)
    v2, g2 = _value_and_grad(model, want_fn)
    assert v1.item() == pytest.approx(v2.item(), rel=1e-6, abs=1e-6)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["jem", "jempp"])
def test_jem_and_jempp_loss_is_the_paper_equation(name):
    f, model = _fixed(), _model()
    b = f["batch"]
    obj = _objective(name, f["data"])
    _stub_sampler(obj, f["x_fake"], f["x_fake_y"], b)
    _assert_same(model, lambda: obj.loss(model, b)[0],
                 lambda: jem_equation(model, b, f["x_fake"], f["x_fake_y"], b.x_px, px_weight=W["px_weight"],
                                      pxy_weight=W["pxy_weight"], energy_l2=W["energy_l2"]))


def test_sada_jem_loss_and_its_perturbed_pass_are_the_paper_equation():
    """x⁺ is the un-augmented batch; SAM's second pass reuses x̃ and keeps the energy penalty (§3.1, §3.3; the
    authors' code drops it there, where it could not act on the update; the paper has it at 0)."""
    f, model = _fixed(), _model()
    b = f["batch"]
    obj = _objective("sada_jem", f["data"], pxy_weight=0.0)
    _stub_sampler(obj, f["x_fake"], f["x_fake_y"], b)
    kw = dict(px_weight=W["px_weight"], pxy_weight=0.0)
    _assert_same(model, lambda: obj.loss(model, b)[0],
                 lambda: jem_equation(model, b, f["x_fake"], f["x_fake_y"], b.x_px_clean, energy_l2=W["energy_l2"], **kw))
    obj.sample = None  # the second pass must not sample again
    _assert_same(model, lambda: obj.perturbed_loss(model, b),
                 lambda: jem_equation(model, b, f["x_fake"], f["x_fake_y"], b.x_px_clean, energy_l2=W["energy_l2"], **kw))


@pytest.mark.parametrize("positive", ["compressed", "direct"])
def test_hdge_loss_is_the_paper_equation(positive):
    f, model = _fixed(), _model()
    b = f["batch"]
    obj = _objective("hdge", None, queue_size=len(f["negatives"]), positive=positive, normalisation="l2")
    obj.queue.data = f["negatives"].clone()
    _assert_same(model, lambda: obj.loss(model, b)[0],
                 lambda: hdge_equation(model, b, f["negatives"], ce_weight=W["ce_weight"],
                                       contrast_weight=W["contrast_weight"], positive=positive))


def test_hdge_jem_loss_is_hdge_plus_jems_px_term():
    f, model = _fixed(), _model()
    b = f["batch"]
    obj = _objective("hdge_jem", None, queue_size=len(f["negatives"]), positive="compressed", normalisation="l2")
    obj.queue.data = f["negatives"].clone()
    _stub_sampler(obj.jem, f["x_fake"], f["x_fake_y"], b)

    def want():
        pos, neg = lse(model, b.x_px).mean(), lse(model, f["x_fake"]).mean()
        return (hdge_equation(model, b, f["negatives"], ce_weight=W["ce_weight"], contrast_weight=W["contrast_weight"],
                              positive="compressed")
                + W["px_weight"] * -(pos - neg) + W["energy_l2"] * (pos ** 2 + neg ** 2))
    _assert_same(model, lambda: obj.loss(model, b)[0], want)


@pytest.mark.parametrize("name", ["jem", "jempp", "sada_jem", "hdge_jem"])
def test_px_weight_zero_builds_no_sampler_and_leaves_the_discriminative_loss(name):
    """px_weight 0 (and pxy_weight 0): no buffer, no sampling, no energy penalty; loss = CE (jem family)
    or hdge's loss (hdge_jem)."""
    f, model = _fixed(), _model()
    b = f["batch"]
    obj = _objective(name, f["data"], px_weight=0.0, pxy_weight=0.0, queue_size=len(f["negatives"]),
                     positive="compressed", normalisation="l2")
    jem = getattr(obj, "jem", obj)
    assert jem.buffer is None and obj.state_dict().get("buffer") is None
    jem.sample = None  # any sampling attempt fails
    if name == "hdge_jem":
        obj.queue.data = f["negatives"].clone()
        want = lambda: hdge_equation(model, b, f["negatives"], ce_weight=W["ce_weight"],  # noqa: E731
                                     contrast_weight=W["contrast_weight"], positive="compressed")
    else:
        want = lambda: cross_entropy(model, b.x_lab, b.y)  # noqa: E731
    _assert_same(model, lambda: obj.loss(model, b)[0], want)


def test_pxy_chains_use_the_batch_labels_and_their_class_partitions():
    """JEM's p(x|y) term (METHODS §1.1, the JEM code's sample_q with y): one chain per labelled image,
    drawn from the partition of the buffer that belongs to its label, run on f(x)[y], written back there."""
    f, model = _fixed(), _model()
    b = f["batch"]
    obj = _objective("jem", None, buffer_size=20, reinit_freq=0.0, sgld_steps=1)
    assert obj.buffer.n_classes == C and obj.buffer.per_class == 4
    seen = {}
    run = obj.run_chains

    def spy(model, x0, *, y=None, **kw):
        seen["y"] = y
        return run(model, x0, y=y, **kw)
    obj.run_chains = spy
    before = obj.buffer.buffer.clone()
    x = obj.sample(model, y=b.y)
    assert x.shape == (len(b.y), *SHAPE) and torch.equal(seen["y"], b.y)
    changed = (obj.buffer.buffer != before).flatten(1).any(1).nonzero().squeeze(1)  # rows written back
    assert len(changed) > 0 and set((changed // 4).tolist()) <= set(b.y.tolist())
    for row in changed.tolist():  # each written row holds a chain of its own partition's class
        assert any(torch.equal(obj.buffer.buffer[row], x[i]) and b.y[i] == row // 4 for i in range(len(x)))
