"""A linear ranking model trained with any loss of :mod:`rank.learn.losses`."""
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import as_float_array, check_choice, check_real
from rank.errors import InvalidValueError, ShapeError
from rank.learn import losses as _losses

__all__ = ["LinearRanker"]


class LinearRanker:
    """Linear scoring function ``score = X @ coef_`` fitted by L-BFGS (scipy) on a ranking loss.

    The objective is ``loss(X @ w) / n_groups + alpha / 2 * |w|^2``; with ``loss="hinge"`` it is
    a Ranking SVM (the hinge is not smooth, so L-BFGS stops at an approximate minimum). No
    intercept: it would not change any ranking.

    Parameters
    ----------
    loss : 'ranknet' (default), 'lambdarank', 'hinge', 'listnet', 'listmle' or 'approx_ndcg'
    alpha : float >= 0, default 1e-3, L2 penalty
    max_iter : int, default 200
    **loss_params : keyword arguments of the loss

    Each iteration costs one loss evaluation and two products with X, O(n d).

    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    >>> model = LinearRanker().fit(X, [0, 1, 0, 1], group=[2, 2])
    >>> bool(model.coef_[0] > model.coef_[1])
    True
    >>> model.predict(X).shape
    (4,)
    """

    def __init__(self, loss: str = "ranknet", *, alpha: float = 1e-3, max_iter: int = 200, **loss_params: Any) -> None:
        check_choice("loss", loss, _losses.LOSSES)
        self.loss = loss
        self.alpha = check_real("alpha", alpha, 0.0)
        self.max_iter = int(max_iter)
        self.loss_params = loss_params
        self.coef_: Optional[np.ndarray] = None
        self.n_iter_ = 0

    def fit(self, X: ArrayLike, y: ArrayLike, group: Optional[ArrayLike] = None, *,
            qid: Optional[ArrayLike] = None) -> "LinearRanker":
        """Fit on features X (n, d), integer labels y (n,) and group sizes or qid; returns self."""
        from scipy.optimize import minimize

        x = as_float_array(X, "X", 2, dtypes=(np.dtype(np.float64),), default=np.float64)
        y = np.asarray(y)
        if y.shape != (x.shape[0],):
            raise ShapeError(f"y: expected shape ({x.shape[0]},) to match X, got shape {y.shape}")
        offsets = _losses.group_offsets(x.shape[0], group, qid)
        n_groups = offsets.size - 1
        fn = _losses.LOSSES[self.loss]
        fn(np.zeros(x.shape[0]), y, qid=None, group=np.diff(offsets), **self.loss_params)  # validate once

        def objective(w):
            res = fn(x @ w, y, group=np.diff(offsets), **self.loss_params)
            f = res.loss / n_groups + 0.5 * self.alpha * float(w @ w)
            g = x.T @ res.grad / n_groups + self.alpha * w
            return f, g

        out = minimize(objective, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter})
        self.coef_ = out.x
        self.n_iter_ = int(out.nit)
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Scores (n,) float64 of the rows of X (n, d)."""
        if self.coef_ is None:
            raise InvalidValueError("LinearRanker: call fit before predict")
        x = as_float_array(X, "X", 2, dtypes=(np.dtype(np.float64),), default=np.float64)
        if x.shape[1] != self.coef_.size:
            raise ShapeError(f"X: expected {self.coef_.size} columns, got shape {x.shape}")
        return x @ self.coef_
