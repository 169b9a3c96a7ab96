"""The objective protocol (ebm/objectives/base.py): what the train loop may ask, answered by every objective."""
import pytest
import torch

from ebm.config import parse_params
from ebm.models import build_model
from ebm.objectives import REGISTRY, Batch, Objective, build_objective
from ebm.objectives.jem import JEM
from tests.conftest import tiny_params_dict


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return Batch(x_lab=x, y=torch.arange(n) % 2, x_px=x.flip(0), x_px_clean=x)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_objective_answers_the_protocol(name):
    p = parse_params(tiny_params_dict())
    data = (torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2)
    obj = build_objective(name, p, n_classes=2, data=data)
    assert isinstance(obj, Objective) and obj.name == name
    model = build_model(p.model, 2)
    loss, logs = obj.loss(model, _batch())
    assert loss.ndim == 0 and torch.isfinite(loss) and {"loss", "acc"} <= set(logs)
    assert obj.uses_sam == (name == "sada_jem")
    if obj.uses_sam:
        assert set(obj.sam) == {"rho", "adaptive"} and obj.perturbed_loss(model, _batch()).ndim == 0
    else:
        with pytest.raises(NotImplementedError, match="does not use SAM"):
            obj.perturbed_loss(model, _batch())
    state = obj.state_dict()
    again = build_objective(name, p, n_classes=2, data=data)
    again.load_state_dict(state)
    assert again.state_dict().keys() == state.keys()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_terms_split_the_loss_into_the_weighted_cross_entropy_and_the_rest(name):
    """terms(): the first is w·CE(f(x_lab), y), written out here (w: HDGE's ce_weight, 0.7; else 1), nothing
    else (no energy penalty, no contrast); the loss is the two terms' sum; only softmax has no rest."""
    import copy

    import torch.nn.functional as F

    raw = tiny_params_dict()
    for o in ("hdge", "hdge_jem"):
        raw["train"][o]["ce_weight"] = 0.7
    p = parse_params(raw)
    data = (torch.rand(8, 3, 32, 32) * 2 - 1, torch.arange(8) % 2)
    obj = build_objective(name, p, n_classes=2, data=data)
    model = build_model(p.model, 2)
    b = _batch()
    twin = copy.deepcopy(obj)  # the same buffer (and queue), and under the forked RNG the same samples
    with torch.random.fork_rng():
        ce, rest, _ = obj.terms(model, b)
    loss, _ = twin.loss(model, b)
    w = 0.7 if name.startswith("hdge") else 1.0
    torch.testing.assert_close(ce, w * F.cross_entropy(model(b.x_lab), b.y))
    assert (rest is None) == (name == "softmax")
    torch.testing.assert_close(loss, ce if rest is None else ce + rest)


def test_hdge_jem_composes_jem_on_its_own_section():
    p = parse_params(tiny_params_dict())
    obj = build_objective("hdge_jem", p, n_classes=2)
    assert type(obj.jem) is JEM and obj.jem.cfg is p.train.hdge_jem
    assert len(obj.jem.buffer.buffer) == p.train.hdge_jem.buffer_size
