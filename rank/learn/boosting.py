"""Custom ranking objectives for LightGBM and XGBoost built on :mod:`rank.learn.losses`.

Only losses with a hessian can drive gradient boosting: 'lambdarank', 'ranknet', 'listnet',
'listmle'. Neither LightGBM nor XGBoost is imported here; the objectives only read the arrays
and group information the libraries hand them.
"""
from typing import Any, Callable, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import check_choice
from rank.errors import InvalidValueError
from rank.learn import losses as _losses

__all__ = ["lightgbm_objective", "xgboost_objective", "BOOSTING_LOSSES"]

#: Losses usable as boosting objectives (they return a hessian).
BOOSTING_LOSSES = ("lambdarank", "ranknet", "listnet", "listmle")


def _loss_fn(name: str, params: dict) -> Callable[..., Tuple[np.ndarray, np.ndarray]]:
    check_choice("name", name, BOOSTING_LOSSES, hint=" (losses with a hessian)")
    fn = _losses.LOSSES[name]
    if name == "lambdarank":  # boosting never reads the loss
        params = {"compute_loss": False, **params}
    fn(np.zeros(2), np.array([1, 0]), group=[2], **params)  # reject bad parameters now, not mid-training

    def grad_hess(preds, labels, group=None, qid=None):
        res = fn(np.asarray(preds, np.float64).ravel(), labels, group=group, qid=qid, **params)
        return res.grad, res.hess

    return grad_hess


class LightGBMObjective:
    """A LightGBM custom objective (see :func:`lightgbm_objective`)."""

    def __init__(self, name: str, params: dict) -> None:
        self.name = name
        self.params = params
        self._fn = _loss_fn(name, params)

    def __call__(self, y_true: Any, y_pred: Any, weight: Any = None, group: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        if hasattr(y_pred, "get_group") and hasattr(y_pred, "get_label"):  # lgb.train: (preds, Dataset)
            preds, data = y_true, y_pred
            labels, sizes = data.get_label(), data.get_group()
            weight = data.get_weight()
        else:  # scikit-learn API: (y_true, y_pred, weight, group)
            preds, labels, sizes = y_pred, y_true, group
        if sizes is None:
            raise InvalidValueError("lightgbm_objective: the training data has no group (query) information")
        grad, hess = self._fn(preds, labels, group=np.asarray(sizes).astype(np.int64))
        if weight is not None:
            w = np.asarray(weight, np.float64)
            grad, hess = grad * w, hess * w
        return grad, hess

    def __repr__(self) -> str:
        return f"lightgbm_objective({self.name!r}, **{self.params!r})"


def lightgbm_objective(name: str = "lambdarank", **params: Any) -> LightGBMObjective:
    """A LightGBM custom objective computing `name`'s gradient and hessian.

    Works with ``lgb.train(params={"objective": obj, ...}, ...)`` (LightGBM 4: the callable is
    called as ``obj(preds, dataset)`` and reads labels, group sizes and weights from the
    Dataset) and with the scikit-learn API ``LGBMRanker(objective=obj).fit(X, y, group=...)``
    (called as ``obj(y_true, y_pred, weight, group)``). Row weights, if any, multiply the
    gradient and hessian (as LightGBM's built-in objectives do).

    Parameters
    ----------
    name : 'lambdarank' (default), 'ranknet', 'listnet' or 'listmle'
    **params : keyword arguments of that loss (e.g. ``truncation_level=30, sigma=1.0,
        label_gain=[...], norm=True, n_threads=2`` for lambdarank)

    Each call costs one evaluation of the loss kernel, O(n_g * min(n_g, t)) per group for lambdarank.

    >>> obj = lightgbm_objective("lambdarank", truncation_level=10)
    >>> grad, hess = obj([1, 0], [0.0, 0.0], None, [2])
    >>> grad.round(4).tolist()
    [-0.2266, 0.2266]
    """
    return LightGBMObjective(name, params)


class XGBoostObjective:
    """An XGBoost custom objective (see :func:`xgboost_objective`)."""

    def __init__(self, name: str, group: Optional[ArrayLike], qid: Optional[ArrayLike], params: dict) -> None:
        if group is not None and qid is not None:
            raise InvalidValueError("xgboost_objective: pass at most one of group and qid")
        self.name = name
        self.params = params
        self.group = None if group is None else np.asarray(group, np.int64)
        self.qid = None if qid is None else np.asarray(qid)
        self._fn = _loss_fn(name, params)

    def __call__(self, a: Any, b: Any) -> Tuple[np.ndarray, np.ndarray]:
        if hasattr(b, "get_label") and hasattr(b, "get_uint_info"):  # xgb.train: (preds, DMatrix)
            preds, labels = a, b.get_label()
            group, qid = self.group, self.qid
            if group is None and qid is None:
                ptr = np.asarray(b.get_uint_info("group_ptr"), np.int64)
                if ptr.size < 2:
                    raise InvalidValueError(
                        "xgboost_objective: the DMatrix has no group information; set it with "
                        "DMatrix(..., group=... or qid=...) or pass group=/qid= to xgboost_objective")
                group = np.diff(ptr)
        else:  # scikit-learn API: (y_true, y_pred)
            labels, preds = a, b
            group, qid = self.group, self.qid
            if group is None and qid is None:
                raise InvalidValueError(
                    "xgboost_objective: the scikit-learn API passes no group information; "
                    "create the objective with group=... or qid=... of the training rows")
        return self._fn(preds, labels, group=group, qid=qid)

    def __repr__(self) -> str:
        return f"xgboost_objective({self.name!r}, **{self.params!r})"


def xgboost_objective(name: str = "lambdarank", *, group: Optional[ArrayLike] = None,
                      qid: Optional[ArrayLike] = None, **params: Any) -> XGBoostObjective:
    """An XGBoost custom objective computing `name`'s gradient and hessian.

    With ``xgb.train(params, dtrain, obj=obj)`` the group boundaries are read from the
    DMatrix (built with ``group=`` or ``qid=``) unless given here. The scikit-learn API
    (``XGBRanker(objective=obj)`` / ``XGBRegressor(objective=obj)``) calls the objective as
    ``obj(y_true, y_pred)`` without group information, so pass `group` (sizes) or `qid` of the
    training rows, in training order, when creating it.

    Parameters
    ----------
    name : 'lambdarank' (default), 'ranknet', 'listnet' or 'listmle'
    group, qid : optional group sizes or per-row query ids of the training data
    **params : keyword arguments of the loss

    >>> obj = xgboost_objective("ranknet", group=[2])
    >>> obj([1, 0], [0.0, 0.0])[0].tolist()
    [-0.5, 0.5]
    """
    return XGBoostObjective(name, group, qid, params)


