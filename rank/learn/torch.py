"""PyTorch versions of the :mod:`rank.learn` losses, over padded batches with a mask.

Each function takes ``scores`` (B, L) float tensor, ``labels`` (B, L) integer (or integer-valued
float) tensor and ``mask`` (B, L) bool tensor (True = a real item; padding may hold anything),
and returns the loss summed over the B lists as a 0-d tensor, differentiable with respect to
`scores` by autograd. With the same parameters, value and gradient equal the NumPy losses on
the concatenated valid items (``lambdarank`` with ``exact_sigmoid=True``). The pairwise losses
build dense (B, L, L) tensors: O(B L^2) time and memory.

Devices and dtypes: these losses are plain tensor algebra, so they run where the tensors are
(CPU, CUDA, ...; every tensor they create is put on the device of `scores`), except
``soft_ndcg``, whose soft ranks come from the compiled CPU kernel (copied there and back, see
:mod:`rank.soft.torch`). float16 and bfloat16 scores are computed in float32 and the loss is
returned in the input dtype.

>>> import torch
>>> from rank.learn.torch import ranknet
>>> s = torch.tensor([[0.0, 1.0, 5.0]], requires_grad=True)
>>> round(float(ranknet(s, torch.tensor([[1, 0, 0]]), torch.tensor([[True, True, False]])).detach()), 6)
1.313262
"""
from typing import Any, Callable, Dict, Optional, Sequence

try:
    import torch
    from torch.nn import functional as F
except ImportError as e:  # pragma: no cover - exercised only without torch
    from rank.errors import MissingDependencyError

    raise MissingDependencyError("rank.learn.torch needs PyTorch: install rank-kernels[torch]") from e

import functools

from rank._validate import check_choice
from rank.errors import DTypeError, InvalidValueError, ShapeError

__all__ = ["ranknet", "pairwise_hinge", "listnet", "listmle", "approx_ndcg", "lambdarank", "soft_ndcg",
           "RankingLoss"]


_LOW = (torch.float16, torch.bfloat16)


def _upcast(fn: Callable[..., "torch.Tensor"]) -> Callable[..., "torch.Tensor"]:
    """Run loss `fn` in float32 for float16/bfloat16 scores and return the loss in their dtype."""
    @functools.wraps(fn)
    def wrapper(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None,
                *args: Any, **kw: Any) -> "torch.Tensor":
        if not isinstance(scores, torch.Tensor):
            raise DTypeError(f"scores: expected a torch.Tensor, got {type(scores).__name__}")
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels, device=scores.device)
        if mask is not None and not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(mask, device=scores.device)
        if not scores.is_floating_point():
            raise DTypeError(f"scores: expected a floating-point tensor, got {scores.dtype}")
        if scores.dtype in _LOW:
            return fn(scores.float(), labels, mask, *args, **kw).to(scores.dtype)
        return fn(scores, labels, mask, *args, **kw)
    return wrapper


def _check(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"]) -> Any:
    if scores.dim() != 2:
        raise ShapeError(f"scores: expected a 2-D (batch, list) tensor, got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape:
        raise ShapeError(f"labels: expected shape {tuple(scores.shape)}, got {tuple(labels.shape)}")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    elif mask.shape != scores.shape:
        raise ShapeError(f"mask: expected shape {tuple(scores.shape)}, got {tuple(mask.shape)}")
    mask = mask.to(device=scores.device, dtype=torch.bool)
    labels = labels.to(scores.device)
    if bool((labels[mask] < 0).any()):
        raise InvalidValueError("labels: expected grades >= 0")
    return labels.to(scores.dtype), mask


def _pairs(labels, mask):
    return (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]


def _diff(scores):
    return scores[:, :, None] - scores[:, None, :]


@_upcast
def ranknet(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None,
            sigma: float = 1.0) -> "torch.Tensor":
    """Sum over valid pairs with labels[i] > labels[j] of log(1 + exp(-sigma (s_i - s_j)))."""
    y, mask = _check(scores, labels, mask)
    pairs = _pairs(y, mask)
    return torch.where(pairs, F.softplus(-sigma * _diff(scores)), 0.0).sum()


@_upcast
def pairwise_hinge(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None,
                   margin: float = 1.0) -> "torch.Tensor":
    """Sum over valid pairs with labels[i] > labels[j] of max(0, margin - (s_i - s_j))."""
    y, mask = _check(scores, labels, mask)
    return torch.where(_pairs(y, mask), F.relu(margin - _diff(scores)), 0.0).sum()


@_upcast
def listnet(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None) -> "torch.Tensor":
    """Sum over lists of -sum softmax(labels) log softmax(scores) (padding excluded)."""
    y, mask = _check(scores, labels, mask)
    neg = torch.finfo(scores.dtype).min
    target = torch.softmax(y.masked_fill(~mask, neg), dim=1)
    logq = torch.log_softmax(scores.masked_fill(~mask, neg), dim=1)
    return -torch.where(mask, target * logq, 0.0).sum()


@_upcast
def listmle(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None) -> "torch.Tensor":
    """Plackett-Luce negative log-likelihood of the ranking by label (ties in position order)."""
    y, mask = _check(scores, labels, mask)
    key = y.masked_fill(~mask, -1.0)
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    s = scores.gather(1, order).masked_fill(~mask.gather(1, order), float("-inf"))
    m = mask.gather(1, order)
    lse = torch.flip(torch.logcumsumexp(torch.flip(s, [1]), dim=1), [1])
    return torch.where(m, lse - torch.where(m, s, 0.0), 0.0).sum()


def _gain_table(gain: str, label_gain: Optional[Sequence[float]], max_label: int, like: "torch.Tensor") -> Any:
    check_choice("gain", gain, ("exp", "linear"))
    if label_gain is not None:
        g = torch.as_tensor(label_gain, dtype=like.dtype, device=like.device)
        if max_label >= g.numel():
            raise InvalidValueError(f"labels: label {max_label} has no entry in label_gain (length {g.numel()})")
        return g
    if gain == "exp":
        if max_label > 30:
            raise InvalidValueError(f"labels: the exponential gain supports labels up to 30, got {max_label}; pass label_gain")
        return torch.exp2(torch.arange(max_label + 1, dtype=like.dtype, device=like.device)) - 1.0
    return torch.arange(max_label + 1, dtype=like.dtype, device=like.device)


def _gains(y, mask, gain, label_gain, like):
    if label_gain is None and gain == "linear":  # the gain is the grade: no table (grades may be ~2**31)
        return torch.where(mask, y, 0.0)
    yi = torch.where(mask, y, 0.0).long()
    table = _gain_table(gain, label_gain, int(yi.max()) if yi.numel() else 0, like)
    return torch.where(mask, table[yi], 0.0)


def _ideal_dcg(g, k):
    srt = torch.sort(g, dim=1, descending=True).values[:, :k]
    disc = 1.0 / torch.log2(torch.arange(srt.shape[1], dtype=g.dtype, device=g.device) + 2.0)
    return (srt * disc).sum(1)


@_upcast
def approx_ndcg(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None,
                alpha: float = 10.0, gain: str = "exp", label_gain: Optional[Sequence[float]] = None) -> "torch.Tensor":
    """Sum over lists of 1 - ApproxNDCG (lists whose labels are all 0 contribute 0)."""
    y, mask = _check(scores, labels, mask)
    g = _gains(y, mask, gain, label_gain, scores)
    pair = mask[:, :, None] & mask[:, None, :] & ~torch.eye(scores.shape[1], dtype=torch.bool, device=scores.device)[None]
    sig = torch.sigmoid(alpha * (scores[:, None, :] - scores[:, :, None]))  # [b, i, j] = sigma(a (s_j - s_i))
    rank = 1.0 + torch.where(pair, sig, 0.0).sum(2)
    dcg = torch.where(mask, g / torch.log2(1.0 + rank), 0.0).sum(1)
    ideal = _ideal_dcg(g, scores.shape[1])
    ok = ideal > 0
    return torch.where(ok, 1.0 - dcg / torch.where(ok, ideal, 1.0), 0.0).sum()


@_upcast
def lambdarank(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None,
               truncation_level: int = 30, sigma: float = 1.0, gain: str = "exp",
               label_gain: Optional[Sequence[float]] = None, norm: bool = True) -> "torch.Tensor":
    """LambdaRank as a loss: delta-NDCG weighted pairwise logistic loss, weights held constant.

    Its gradient is LightGBM's lambdarank gradient with the exact logistic function (see
    :func:`rank.learn.lambdarank`); the weights are recomputed from the current ranking at each
    call and carry no gradient.
    """
    y, mask = _check(scores, labels, mask)
    diff = _diff(scores)
    with torch.no_grad():
        s = scores.detach().masked_fill(~mask, float("-inf"))
        order = torch.sort(s, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order).contiguous())
        disc = 1.0 / torch.log2(rank.to(scores.dtype) + 2.0)
        g = _gains(y, mask, gain, label_gain, scores)
        ideal = _ideal_dcg(g, truncation_level)
        inv = torch.where(ideal > 0, 1.0 / torch.where(ideal > 0, ideal, 1.0), 0.0)
        pairs = _pairs(y, mask) & (torch.minimum(rank[:, :, None], rank[:, None, :]) < truncation_level)
        w = (g[:, :, None] - g[:, None, :]).abs() * (disc[:, :, None] - disc[:, None, :]).abs() * inv[:, None, None]
        d = diff.detach()
        if norm:
            best = s.max(1).values
            worst = scores.detach().masked_fill(~mask, float("inf")).min(1).values
            spread = (best != worst)[:, None, None]
            w = torch.where(spread, w / (0.009999999776482582 + d.abs()), w)
        w = torch.where(pairs, w, 0.0)
        factor = torch.ones(scores.shape[0], dtype=scores.dtype, device=scores.device)
        if norm:
            total = (2.0 * sigma * w * torch.sigmoid(-sigma * d)).sum((1, 2))
            factor = torch.where(total > 0, torch.log2(1.0 + total) / torch.where(total > 0, total, 1.0), 1.0)
    per_list = (w * F.softplus(-sigma * diff)).sum((1, 2))
    return (factor * per_list).sum()


@_upcast
def soft_ndcg(scores: "torch.Tensor", labels: "torch.Tensor", mask: Optional["torch.Tensor"] = None,
              regularization_strength: float = 1.0, regularization: str = "l2",
              truncation_level: Optional[int] = None, gain: str = "exp",
              label_gain: Optional[Sequence[float]] = None) -> "torch.Tensor":
    """Sum over lists of 1 - NDCG with the projection soft ranks (see :func:`rank.learn.soft_ndcg`).

    The soft ranks of each list's valid items come from :func:`rank.soft.torch.soft_rank` (a
    compiled kernel; CPU float32/float64 tensors), lists with the same number of valid items
    ranked together; lists whose ideal DCG is 0 contribute 0. O(L log L) per list.

    >>> s = torch.tensor([[0.0, 1.0, 3.0, 9.0]], dtype=torch.float64, requires_grad=True)
    >>> loss = soft_ndcg(s, torch.tensor([[1, 0, 0, 0]]), torch.tensor([[True, True, True, False]]),
    ...                  regularization_strength=2.0)
    >>> round(float(loss.detach()), 6)
    0.466516
    """
    from rank.soft.torch import soft_rank

    y, mask = _check(scores, labels, mask)
    if truncation_level is not None and (isinstance(truncation_level, bool) or not isinstance(truncation_level, int)
                                         or truncation_level <= 0):
        raise InvalidValueError(f"truncation_level: expected a positive integer, got {truncation_level!r}")
    g = _gains(y, mask, gain, label_gain, scores)
    ideal = _ideal_dcg(g, scores.shape[1] if truncation_level is None else truncation_level)
    counts = mask.sum(1)
    first = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # valid positions first, in order
    total = scores.new_zeros(())
    for c in torch.unique(counts[ideal > 0]).tolist():
        rows = torch.nonzero((counts == c) & (ideal > 0)).squeeze(1)
        idx = first[rows, :c]
        r = soft_rank(scores[rows].gather(1, idx), direction="descending",
                      regularization_strength=regularization_strength, regularization=regularization)
        d = 1.0 / torch.log2(1.0 + r)
        k = truncation_level
        if k is not None and k < c:  # ramp between soft ranks k and k + 1 (its slope only strictly inside)
            d = d * torch.where((r > k) & (r < k + 1), k + 1.0 - r, (r <= k).to(r.dtype))
        dcg = (g[rows].gather(1, idx) * d).sum(1)
        total = total + (1.0 - dcg / ideal[rows]).sum()
    return total


_FUNCS: Dict[str, Callable[..., Any]] = {"lambdarank": lambdarank, "ranknet": ranknet, "hinge": pairwise_hinge, "listnet": listnet,
          "listmle": listmle, "approx_ndcg": approx_ndcg, "soft_ndcg": soft_ndcg}


class RankingLoss(torch.nn.Module):
    """``nn.Module`` wrapper: ``RankingLoss("lambdarank", truncation_level=10)(scores, labels, mask)``.

    `reduction` 'sum' (default, as the functions) or 'mean' (divided by the number of lists).
    """

    def __init__(self, name: str = "lambdarank", reduction: str = "sum", **params: Any) -> None:
        super().__init__()
        check_choice("name", name, _FUNCS)
        check_choice("reduction", reduction, ("sum", "mean"))
        self.name, self.reduction, self.params = name, reduction, params

    def forward(self, scores: "torch.Tensor", labels: "torch.Tensor",
                mask: Optional["torch.Tensor"] = None) -> "torch.Tensor":
        loss = _FUNCS[self.name](scores, labels, mask, **self.params)
        return loss / scores.shape[0] if self.reduction == "mean" else loss


