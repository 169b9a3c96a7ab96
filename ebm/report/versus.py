"""A hybrid against softmax, as issue 17 sets the bar: accuracy within 3 points, a lower ECE, and on every
OOD set a generative score above softmax's same score. Shared by the report's seed table and
``bench/ablate_default.py``, so that both judge a run the same way."""
from __future__ import annotations

GENERATIVE = ("logpx", "pxgrad")  # the scores of p(x) ("its generative score"), not the classifier's maxprob
ACCURACY_WITHIN = 3.0  # points


def versus_softmax(r: dict, ref: dict) -> dict[str, bool]:
    """``r`` against ``ref`` (softmax's), each ``{"accuracy": %, "ece": %, "ood": {set: {score: AUROC}}}``:
    ``acc`` (within 3 points, compared to 0.1 as printed, so 3.0 behind is within), ``ECE`` (lower) and
    ``OOD`` (on every set both have, ``logpx`` or ``pxgrad`` above ref's same score; False with no common set)."""
    sets = [s for s in r["ood"] if s in ref["ood"]]
    ood = bool(sets) and all(any(r["ood"][s].get(k, float("-inf")) > ref["ood"][s].get(k, float("inf"))
                                 for k in GENERATIVE) for s in sets)
    return {"acc": round(r["accuracy"] - ref["accuracy"], 1) >= -ACCURACY_WITHIN, "ECE": r["ece"] < ref["ece"],
            "OOD": ood}
