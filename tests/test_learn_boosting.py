"""LambdaRank against LightGBM's built-in objective; the LightGBM and XGBoost adapters.

How the built-in gradients are compared: LightGBM exposes no call returning its objective's
gradients, so the test trains two boosters with identical parameters and seeds, one with the
built-in ``lambdarank`` objective and one with ``lightgbm_objective("lambdarank")``. Every
split and leaf value is a function of the per-row gradients and hessians, so the two models
agree (tree structure and predictions, up to float32 rounding) only if our gradients and
hessians match the built-in ones at every iteration. A second check reads the gradients more
directly: ``Booster.refit`` with ``decay_rate=0`` recomputes every leaf value of a tree as
``-sum(grad) / (sum(hess) + lambda_l2)`` with the built-in objective at the scores given as
``init_score``; a stump whose leaves split off one row at a time gives each row's ratio.
"""
import numpy as np
import pytest

from rank.learn import lambdarank, lightgbm_objective, xgboost_objective
from rank.learn.losses import LOSSES

lgb = pytest.importorskip("lightgbm")


def synthetic(n_groups=60, size=(5, 40), d=6, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(size[0], size[1], n_groups)
    n = int(sizes.sum())
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    latent = X @ w + 0.5 * rng.standard_normal(n)
    y = np.clip(np.floor(latent + 1.5), 0, 4).astype(int)
    return X, y, sizes


BASE = dict(num_leaves=7, learning_rate=0.1, min_data_in_leaf=5, verbose=-1, seed=1,
            deterministic=True, num_threads=1, force_col_wise=True)


def _train(params, X, y, sizes, rounds):
    return lgb.train(params, lgb.Dataset(X, y, group=sizes), num_boost_round=rounds)


@pytest.mark.parametrize("extra", [
    {},
    {"lambdarank_truncation_level": 5, "sigmoid": 2.0},
    {"lambdarank_norm": False, "label_gain": [0.0, 1.0, 3.0, 4.0, 10.0]},
])
def test_custom_objective_reproduces_builtin_model(extra):
    X, y, sizes = synthetic()
    builtin = _train({**BASE, "objective": "lambdarank", **extra}, X, y, sizes, 5)
    ours_params = {"truncation_level": extra.get("lambdarank_truncation_level", 30),
                   "sigma": extra.get("sigmoid", 1.0), "norm": extra.get("lambdarank_norm", True)}
    if "label_gain" in extra:
        ours_params["label_gain"] = extra["label_gain"]
    custom = _train({**BASE, "objective": lightgbm_objective("lambdarank", **ours_params)}, X, y, sizes, 5)
    np.testing.assert_allclose(custom.predict(X), builtin.predict(X), rtol=1e-5, atol=1e-7)
    # identical split features and thresholds in every tree
    t1 = [t["tree_structure"] for t in builtin.dump_model()["tree_info"]]
    t2 = [t["tree_structure"] for t in custom.dump_model()["tree_info"]]

    def splits(node):
        if "split_feature" not in node:
            return []
        return [(node["split_feature"], node["threshold"])] + splits(node["left_child"]) + splits(node["right_child"])

    assert [splits(a) for a in t1] == [splits(b) for b in t2]


def test_refit_reads_builtin_gradient_over_hessian():
    """Per-row -g/(h + l2) of the built-in objective at given scores equals ours."""
    X, y, sizes = synthetic(n_groups=3, size=(6, 9), seed=3)
    n = len(y)
    rng = np.random.default_rng(5)
    scores = rng.standard_normal(n)
    params = {**BASE, "objective": "lambdarank", "lambdarank_truncation_level": 4, "num_leaves": 2,
              "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 0.0, "lambda_l2": 0.0, "learning_rate": 1.0,
              "min_data_in_bin": 1}
    grad, hess = lambdarank(scores, y, group=sizes, truncation_level=4)[1:]
    checked = 0
    for r in range(0, n, 3):
        onehot = np.zeros((n, 1))
        onehot[r, 0] = 1.0
        stump = _train({**params, "objective": "regression"}, onehot, onehot[:, 0], None, 1)
        if stump.num_trees() == 0 or stump.dump_model()["tree_info"][0]["num_leaves"] != 2:
            continue
        stump.params = dict(params)
        refit = stump.refit(onehot, y, group=sizes, init_score=scores, decay_rate=0.0)
        leaf = refit.predict(np.ones((1, 1)))[0]
        assert leaf == pytest.approx(-grad[r] / (hess[r] + 1e-15), rel=1e-5, abs=1e-7)
        checked += 1
    assert checked >= 5


def _ndcg_at(scores, y, sizes, k=10):
    out, start = [], 0
    for g in sizes:
        s, lab = scores[start:start + g], y[start:start + g]
        start += g
        gain = 2.0 ** lab - 1
        disc = 1 / np.log2(np.arange(2, g + 2))
        ideal = np.sort(gain)[::-1][:k] @ disc[:min(k, g)]
        if ideal == 0:
            out.append(1.0)
            continue
        order = np.lexsort((np.arange(g), -s))
        out.append(gain[order][:k] @ disc[:min(k, g)] / ideal)
    return float(np.mean(out))


def _load_svmlight(path):
    from scipy.sparse import csr_matrix  # noqa: F401  (scipy is a core dependency of the tests)

    rows, y = [], []
    for line in open(path):
        parts = line.split()
        y.append(int(float(parts[0])))
        rows.append({int(k): float(v) for k, v in (p.split(":") for p in parts[1:])})
    d = max(max(r) for r in rows if r) + 1
    X = np.zeros((len(rows), d))
    for i, r in enumerate(rows):
        for k, v in r.items():
            X[i, k] = v
    return X, np.array(y)


def test_ndcg_matches_builtin_on_lightgbm_rank_sample(shared_data):
    root = shared_data("lightgbm-rank")
    Xtr, ytr = _load_svmlight(root / "rank.train")
    Xte, yte = _load_svmlight(root / "rank.test")
    d = max(Xtr.shape[1], Xte.shape[1])
    Xtr = np.pad(Xtr, ((0, 0), (0, d - Xtr.shape[1])))
    Xte = np.pad(Xte, ((0, 0), (0, d - Xte.shape[1])))
    gtr = np.loadtxt(root / "rank.train.query", dtype=int)
    gte = np.loadtxt(root / "rank.test.query", dtype=int)
    params = {**BASE, "num_leaves": 31, "min_data_in_leaf": 20}
    builtin = _train({**params, "objective": "lambdarank"}, Xtr, ytr, gtr, 50)
    custom = _train({**params, "objective": lightgbm_objective("lambdarank")}, Xtr, ytr, gtr, 50)
    a, b = _ndcg_at(builtin.predict(Xte), yte, gte), _ndcg_at(custom.predict(Xte), yte, gte)
    assert abs(a - b) <= 0.005, (a, b)


def test_ndcg_matches_builtin_on_synthetic_data():
    X, y, sizes = synthetic(n_groups=200, seed=7)
    Xte, yte, ste = synthetic(n_groups=100, seed=8)
    builtin = _train({**BASE, "objective": "lambdarank"}, X, y, sizes, 30)
    custom = _train({**BASE, "objective": lightgbm_objective("lambdarank")}, X, y, sizes, 30)
    a, b = _ndcg_at(builtin.predict(Xte), yte, ste), _ndcg_at(custom.predict(Xte), yte, ste)
    assert abs(a - b) <= 0.005, (a, b)
    assert a > 0.6


@pytest.mark.parametrize("name", ["lambdarank", "ranknet", "listnet", "listmle"])
def test_sklearn_ranker_with_custom_objective(name):
    X, y, sizes = synthetic(n_groups=80, seed=2)
    model = lgb.LGBMRanker(objective=lightgbm_objective(name, n_threads=1), n_estimators=20, num_leaves=7, n_jobs=1,
                           min_child_samples=5, verbose=-1, random_state=0)
    model.fit(X, y, group=sizes)
    Xte, yte, ste = synthetic(n_groups=60, seed=9)
    random_ndcg = _ndcg_at(np.random.default_rng(0).standard_normal(len(yte)), yte, ste)
    assert _ndcg_at(model.predict(Xte), yte, ste) > random_ndcg + 0.1


def test_lightgbm_objective_rejects_losses_without_hessian():
    from rank.errors import UnknownMethodError

    with pytest.raises(UnknownMethodError, match="hessian"):
        lightgbm_objective("hinge")
    with pytest.raises(ValueError):
        lightgbm_objective("lambdarank", sigma=-1)


def test_xgboost_train_and_sklearn():
    xgb = pytest.importorskip("xgboost")
    X, y, sizes = synthetic(n_groups=80, seed=4)
    Xte, yte, ste = synthetic(n_groups=60, seed=9)
    random_ndcg = _ndcg_at(np.random.default_rng(0).standard_normal(len(yte)), yte, ste)
    params = {"max_depth": 3, "eta": 0.3, "nthread": 1, "base_score": 0.0}
    dtrain = xgb.DMatrix(X, y, group=sizes)
    obj = xgboost_objective("lambdarank")
    booster = xgb.train(params, dtrain, num_boost_round=20, obj=obj)
    pred = booster.predict(xgb.DMatrix(Xte))
    assert _ndcg_at(pred, yte, ste) > random_ndcg + 0.1
    # the objective sees the same gradient as a direct call at the same scores
    margin = booster.predict(dtrain, output_margin=True)
    g, h = obj(margin, dtrain)
    res = LOSSES["lambdarank"](margin, y, group=sizes)
    np.testing.assert_array_equal(g, res.grad)
    np.testing.assert_array_equal(h, res.hess)
    # scikit-learn API: group given when creating the objective
    reg = xgb.XGBRegressor(objective=xgboost_objective("ranknet", group=sizes), n_estimators=20,
                           max_depth=3, learning_rate=0.3, n_jobs=1, base_score=0.0)
    reg.fit(X, y)
    assert _ndcg_at(reg.predict(Xte), yte, ste) > random_ndcg + 0.1
    with pytest.raises(ValueError, match="group"):
        xgboost_objective("lambdarank")(y.astype(float), np.zeros(len(y)))
