"""rank.learn.torch losses equal the NumPy ones (value and autograd gradient) on padded batches."""
import numpy as np
import pytest

import rank.learn as L

torch = pytest.importorskip("torch")
T = pytest.importorskip("rank.learn.torch")


def batch(B=7, Lmax=12, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, Lmax + 1, B)
    lengths[0] = Lmax
    s = rng.standard_normal((B, Lmax))
    y = rng.integers(0, 5, (B, Lmax))
    mask = np.arange(Lmax)[None, :] < lengths[:, None]
    s[~mask] = 1e3  # padding must not matter
    y[~mask] = 9
    return s, y, mask, lengths


CASES = [("ranknet", {}), ("ranknet", {"sigma": 2.0}), ("hinge", {"margin": 0.5}), ("listnet", {}),
         ("listmle", {}), ("approx_ndcg", {}), ("lambdarank", {}),
         ("lambdarank", {"truncation_level": 3, "sigma": 1.5}), ("lambdarank", {"norm": False}),
         ("lambdarank", {"gain": "linear"})]
TORCH_NAMES = {"hinge": "pairwise_hinge"}


@pytest.mark.parametrize("name,kw", CASES)
def test_torch_equals_numpy(name, kw):
    s, y, mask, lengths = batch(seed=len(name))
    s[1, 1] = s[1, 0]  # a tie
    flat_s, flat_y = s[mask], y[mask]
    np_kw = dict(kw, exact_sigmoid=True) if name == "lambdarank" else kw
    ref = L.LOSSES[name](flat_s, flat_y, group=lengths, **np_kw)
    st = torch.tensor(s, requires_grad=True)
    loss = getattr(T, TORCH_NAMES.get(name, name))(st, torch.tensor(y), torch.tensor(mask), **kw)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(ref.loss, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(st.grad.numpy()[mask], ref.grad, rtol=1e-8, atol=1e-12)
    assert (st.grad.numpy()[~mask] == 0).all()


def test_module_and_reduction():
    s, y, mask, lengths = batch()
    m = T.RankingLoss("listnet", reduction="mean")
    out = m(torch.tensor(s), torch.tensor(y), torch.tensor(mask))
    assert float(out) == pytest.approx(L.listnet(s[mask], y[mask], group=lengths).loss / len(lengths))
    with pytest.raises(ValueError):
        T.RankingLoss("nope")


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        T.ranknet(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=">= 0"):
        T.ranknet(torch.zeros(1, 2), torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match="label_gain"):
        T.lambdarank(torch.zeros(1, 2), torch.tensor([[0, 31]]))
