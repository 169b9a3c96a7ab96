"""Fréchet distance against closed forms; where the Inception weights come from; IS/FID without weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from ebm.eval import fidelity
from ebm.eval.fidelity import frechet_distance, resolve_inception_weights, sample_quality


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch hub cache in an empty temporary folder; no weights named anywhere."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv("EBM_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("EBM_OFFLINE", raising=False)
    return hub


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)  # variances
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_non_diagonal_2x2():
    mu1, mu2 = np.array([0.5, -1.0]), np.array([1.5, 0.0])
    a = np.array([[2.0, 0.8], [0.8, 1.0]])
    b = np.array([[1.0, -0.3], [-0.3, 0.5]])
    # Tr((AB)^½) = Tr((A^½ B A^½)^½), the latter symmetric PSD: √ of its eigenvalues, computed directly
    ra = linalg.sqrtm(a).real
    tr = np.sum(np.sqrt(np.linalg.eigvalsh(ra @ b @ ra)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(a) + np.trace(b) - 2 * tr
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(frechet_distance(mu2, b, mu1, a), rel=1e-9)


def test_frechet_self_and_symmetry_on_samples():
    rng = np.random.default_rng(1)
    f1 = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    f2 = rng.normal(size=(300, 16)) + 0.5
    m1, c1 = f1.mean(0), np.cov(f1, rowvar=False)
    m2, c2 = f2.mean(0), np.cov(f2, rowvar=False)
    assert abs(frechet_distance(m1, c1, m1, c1)) < 1e-8
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(frechet_distance(m2, c2, m1, c1), rel=1e-8)
    assert frechet_distance(m1, c1, m2, c2) > 0


def test_frechet_singular_covariances_are_regularised():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(5, 32))  # 5 samples in 32 dimensions: rank-4 covariance
    m, c = f.mean(0), np.cov(f, rowvar=False)
    assert np.isfinite(frechet_distance(m, c, m + 1, c))
    assert frechet_distance(m, c, m, c) == pytest.approx(0, abs=1e-3)


def test_frechet_agrees_with_torch_fidelity():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) * 1.5 + 0.3
    s1 = {"mu": f1.mean(0), "sigma": np.cov(f1, rowvar=False)}
    s2 = {"mu": f2.mean(0), "sigma": np.cov(f2, rowvar=False)}
    theirs = fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"]
    assert frechet_distance(s1["mu"], s1["sigma"], s2["mu"], s2["sigma"]) == pytest.approx(theirs, rel=1e-8)


def test_resolve_precedence(tmp_path, monkeypatch, empty_hub):
    env_file, param_file = tmp_path / "env.pth", tmp_path / "param.pth"
    env_file.write_bytes(b"x")
    param_file.write_bytes(b"x")
    assert resolve_inception_weights(str(param_file)) == (str(param_file), None)
    monkeypatch.setenv("EBM_INCEPTION_WEIGHTS", str(env_file))
    assert resolve_inception_weights(str(param_file)) == (str(env_file), None)
    assert resolve_inception_weights("") == (str(env_file), None)
    # torch-fidelity's default when nothing is named and its cache holds the weights
    monkeypatch.setenv("EBM_INCEPTION_WEIGHTS", "")
    cached = empty_hub / "checkpoints" / fidelity.WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    monkeypatch.setenv("EBM_OFFLINE", "1")  # a cached copy needs no network
    assert resolve_inception_weights("") == (None, None)


def test_missing_named_file_is_a_reason(tmp_path, monkeypatch, empty_hub):
    missing = tmp_path / "nope.pth"
    path, reason = resolve_inception_weights(str(missing))
    assert path is None and str(missing) in reason and "evaluate.inception_weights" in reason
    monkeypatch.setenv("EBM_INCEPTION_WEIGHTS", str(missing))
    path, reason = resolve_inception_weights("")
    assert path is None and str(missing) in reason and "EBM_INCEPTION_WEIGHTS" in reason


def test_offline_without_cache_is_a_reason(monkeypatch, empty_hub):
    monkeypatch.setenv("EBM_OFFLINE", "1")
    monkeypatch.setattr(fidelity, "_download", lambda *a, **k: pytest.fail("downloaded while offline"))
    path, reason = resolve_inception_weights("")
    assert path is None and "offline" in reason and "EBM_INCEPTION_WEIGHTS=" in reason


def test_failed_download_is_a_reason(monkeypatch, empty_hub):
    def fail(url, dst, **kw):
        raise TimeoutError("timed out")

    monkeypatch.setattr(fidelity, "_download", fail)
    path, reason = resolve_inception_weights("")
    assert path is None and "TimeoutError" in reason and "download" in reason
    assert not (empty_hub / "checkpoints" / fidelity.WEIGHTS_FILE).exists()


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_sample_quality_offline_gives_none_and_reason(monkeypatch, empty_hub):
    monkeypatch.setenv("EBM_OFFLINE", "1")
    q = sample_quality(_images(6, 0), _images(8, 1), weights="", device="cpu")
    assert q["is"] is None and q["is_std"] is None and q["fid"] is None
    assert (q["n_fake"], q["n_real"]) == (6, 8) and "offline" in q["reason"]


def test_sample_quality_unavailable_path(tmp_path, empty_hub):
    q = sample_quality(_images(4, 0), _images(4, 1), weights=str(tmp_path / "missing.pth"), device="cpu")
    assert q["fid"] is None and "missing.pth" in q["reason"]


def test_sample_quality_torch_fidelity_error_is_a_reason(tmp_path, empty_hub):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    q = sample_quality(_images(4, 0), _images(4, 1), weights=str(bad), device="cpu")
    assert q["is"] is None and q["fid"] is None and q["reason"].startswith("torch-fidelity failed:")


def test_sample_quality_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        sample_quality(np.zeros((4, 32, 32, 3), np.float32), _images(4, 1), weights="", device="cpu")


def test_sample_quality_end_to_end_with_stand_in_weights(tmp_path, monkeypatch, empty_hub):
    """The real torch-fidelity path with a randomly initialised Inception at 75 px (the standard weights
    cannot be had offline): IS is computed on the fake images, FID of fake vs real, and both equal
    torch-fidelity's metric functions on features extracted here from the same images."""
    from torch import nn
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3 as FE
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric

    def seeded_init(self, state_dict):  # stands in for loading the weights file
        g = torch.Generator().manual_seed(0)
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                with torch.no_grad():
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2 / mod.weight[0].numel()) ** 0.5)
        with torch.no_grad():
            self.fc.weight.mul_(300.0)  # logits spread enough that IS is not trivially 1

    monkeypatch.setattr(FE, "INPUT_IMAGE_SIZE", 75)
    monkeypatch.setattr(FE, "load_state_dict", seeded_init)
    weights = tmp_path / "stand-in.pth"
    torch.save({}, weights)
    rng = np.random.default_rng(0)
    fake = np.repeat(rng.integers(0, 256, (10, 1, 1, 3), dtype=np.uint8), 32, 1).repeat(32, 2)  # flat colours
    real = _images(12, 1)
    q = sample_quality(fake, real, weights=str(weights), device="cpu", batch_size=8)
    assert q["reason"] is None and (q["n_fake"], q["n_real"]) == (10, 12)

    fe = FE("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights))
    with torch.no_grad():
        feat_f, logits_f = fe(torch.from_numpy(fake).permute(0, 3, 1, 2))  # (10, 2048), (10, 1008)
        feat_r, _ = fe(torch.from_numpy(real).permute(0, 3, 1, 2))  # (12, 2048)
    assert fidelity.isc_splits(10) == 5 and fidelity.isc_splits(50_000) == 10
    isc = isc_features_to_metric(logits_f, splits=5)
    fid = fid_statistics_to_metric(fid_features_to_statistics(feat_f), fid_features_to_statistics(feat_r), False)
    assert q["is"] == pytest.approx(isc["inception_score_mean"], rel=1e-4) and q["is"] > 1.01
    assert q["is_std"] == pytest.approx(isc["inception_score_std"], rel=1e-3, abs=1e-6)
    assert q["fid"] == pytest.approx(fid["frechet_inception_distance"], rel=1e-4) and q["fid"] > 0


def test_download_is_bounded_by_timeout(tmp_path):
    """A server that accepts the connection but never answers fails the download within the timeout."""
    import socket
    import time

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)  # the kernel completes the handshake; nothing is ever sent
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/w.pth"
        t0 = time.monotonic()
        with pytest.raises(OSError):  # socket.timeout / TimeoutError / URLError are all OSErrors
            fidelity._download(url, str(tmp_path / "w.pth"), timeout=0.5, deadline=5)
        assert time.monotonic() - t0 < 5
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_download_fills_torch_fidelity_cache(tmp_path, monkeypatch, empty_hub):
    """Online with an empty cache, the weights are fetched into torch-fidelity's cache, which it then uses."""
    import functools
    import http.server
    import threading

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # talk to the local server directly
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / fidelity.WEIGHTS_FILE).write_bytes(b"weights")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    handler.log_message = lambda *a: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{srv.server_address[1]}/{fidelity.WEIGHTS_FILE}"
        cached = empty_hub / "checkpoints" / fidelity.WEIGHTS_FILE
        monkeypatch.setattr(fidelity, "_default_weights", lambda: (url, str(cached)))
        try:
            assert resolve_inception_weights("") == (None, None)
        finally:
            srv.shutdown()
    assert cached.read_bytes() == b"weights"


@pytest.mark.parametrize("reference", ["train", "test"])
def test_fid_reference_split_is_a_param_and_sizes_are_reported(monkeypatch, reference):
    """evaluate.fid_reference picks the real images of FID; n_fake / n_real travel with the result."""
    import dataclasses

    import ebm.eval.fidelity as fidelity
    from ebm.config import parse_params
    from ebm.data.store import DatasetArrays
    from ebm.eval.run import sample_quality as run_quality
    from tests.conftest import tiny_params_dict

    seen = []
    monkeypatch.setattr(fidelity, "sample_quality", lambda fake, real, **kw: seen.append(real) or
                        {"is": None, "fid": None, "n_fake": len(fake), "n_real": len(real), "reason": "stub"})
    data = DatasetArrays("shapes", ["a"], _images(12, 1), np.zeros(12, np.int64), _images(7, 2), np.zeros(7, np.int64),
                         {})
    cfg = dataclasses.replace(parse_params(tiny_params_dict()).evaluate, fid_reference=reference, fid_real_images=0)
    q = run_quality({"fresh": _images(5, 0)}, data, cfg, "cpu")
    want = data.x_train if reference == "train" else data.x_test
    assert seen[0] is want and q["fresh"]["n_fake"] == 5 and q["fresh"]["n_real"] == len(want)
