"""The torch and JAX adapters of rank.soft: values equal the NumPy API, torch.autograd.gradcheck
passes, JAX gradients equal torch gradients (also under jit and vmap), and bad input is rejected."""

import numpy as np
import pytest

from rank import errors
from rank.soft import projection as proj

torch = pytest.importorskip("torch")

from rank.soft import torch as st  # noqa: E402  (after the skip)

REGS = ["l2", "kl"]
DIRS = ["ascending", "descending"]


def _np_fn(name):
    return {"soft_rank": proj.soft_rank, "soft_sort": proj.soft_sort}[name]


# --- torch -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["soft_rank", "soft_sort"])
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("direction", DIRS)
def test_torch_values_and_gradcheck(name, reg, direction):
    rng = np.random.default_rng(len(name) + len(reg) + len(direction))
    fn = getattr(st, name)
    kw = dict(direction=direction, regularization_strength=0.7, regularization=reg)
    x = torch.tensor(rng.standard_normal((3, 8)), dtype=torch.float64, requires_grad=True)
    out = fn(x, **kw)
    np.testing.assert_array_equal(out.detach().numpy(), _np_fn(name)(x.detach().numpy(), **kw))
    assert torch.autograd.gradcheck(lambda v: fn(v, **kw), (x,), eps=1e-6, atol=1e-6)
    x1 = torch.tensor(rng.standard_normal(6), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: fn(v, **kw), (x1,), eps=1e-6, atol=1e-6)
    # float32 in, float32 out and gradient
    x32 = x.detach().float().requires_grad_()
    y = fn(x32, **kw)
    assert y.dtype == torch.float32
    (y * torch.arange(8.0)).sum().backward()
    assert x32.grad.dtype == torch.float32
    g = torch.arange(8.0, dtype=torch.float64).expand(3, 8)
    want = (proj.soft_rank_vjp if name == "soft_rank" else proj.soft_sort_vjp)(
        x32.detach().numpy().astype(np.float64), g.numpy(), **kw)
    np.testing.assert_allclose(x32.grad.numpy(), want, rtol=1e-4, atol=1e-4)


def test_torch_topk_and_spearman():
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.standard_normal((4, 9)), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: st.soft_topk_mask(v, 3, regularization_strength=0.5), (x,),
                                    eps=1e-6, atol=1e-6)
    target = torch.tensor(rng.integers(0, 3, (4, 9)), dtype=torch.float64)
    for reg in REGS:
        for reduction in ("mean", "sum", "none"):
            loss = st.spearman_loss(x, target, regularization_strength=0.3, regularization=reg, reduction=reduction)
            want = proj.spearman_loss(x.detach().numpy(), target.numpy(), regularization_strength=0.3,
                                      regularization=reg, reduction=reduction)
            np.testing.assert_allclose(loss.detach().numpy(), want, rtol=1e-12)
        x.grad = None
        st.spearman_loss(x, target, regularization_strength=0.3, regularization=reg).backward()
        _, g = proj.spearman_loss_and_grad(x.detach().numpy(), target.numpy(), regularization_strength=0.3,
                                           regularization=reg)
        np.testing.assert_allclose(x.grad.numpy(), g, rtol=1e-9, atol=1e-12)
        assert torch.autograd.gradcheck(
            lambda v: st.spearman_loss(v, target, regularization_strength=0.3, regularization=reg), (x,),
            eps=1e-6, atol=1e-6)


def test_torch_bad_input():
    with pytest.raises(errors.DTypeError):
        st.soft_rank(torch.tensor([1, 2, 3]))
    with pytest.raises(errors.DTypeError):
        st.soft_rank(np.array([1.0, 2.0]))
    with pytest.raises(errors.NonFiniteError):
        st.soft_sort(torch.tensor([1.0, float("nan")]))
    with pytest.raises(errors.ShapeError):
        st.soft_rank(torch.zeros(2, 2, 2))
    with pytest.raises(errors.UnknownMethodError):
        st.soft_rank(torch.zeros(3), regularization="l1")
    with pytest.raises(errors.InvalidValueError):
        st.soft_rank(torch.zeros(3), regularization_strength=0)
    with pytest.raises(errors.ShapeError):
        st.spearman_loss(torch.zeros(3), torch.zeros(4))


def test_torch_in_a_training_loop():
    """A few steps of gradient descent on the Spearman loss make the scores rank like the target."""
    rng = np.random.default_rng(4)
    target = torch.tensor(rng.standard_normal((8, 20)))
    w = torch.zeros((8, 20), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=50.0)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = st.spearman_loss(w + 0.01 * torch.arange(20.0), target, regularization_strength=0.1)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


# --- JAX -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jx():
    jax = pytest.importorskip("jax")
    from rank.soft import jax as sj

    return jax, sj


@pytest.mark.parametrize("name", ["soft_rank", "soft_sort"])
@pytest.mark.parametrize("reg", REGS)
def test_jax_gradients_equal_torch(jx, name, reg):
    jax, sj = jx
    import jax.numpy as jnp

    rng = np.random.default_rng(5 + len(name) + len(reg))
    x = rng.standard_normal((3, 10)).astype(np.float32)
    w = rng.standard_normal((3, 10)).astype(np.float32)
    for direction in DIRS:
        kw = dict(direction=direction, regularization_strength=0.6, regularization=reg)
        jfn, tfn = getattr(sj, name), getattr(st, name)
        np.testing.assert_array_equal(np.asarray(jfn(jnp.asarray(x), **kw)), _np_fn(name)(x, **kw))
        gj = jax.grad(lambda v: (jfn(v, **kw) * w).sum())(jnp.asarray(x))
        gj_jit = jax.jit(jax.grad(lambda v: (jfn(v, **kw) * w).sum()))(jnp.asarray(x))
        xt = torch.tensor(x, requires_grad=True)
        (tfn(xt, **kw) * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(np.asarray(gj), xt.grad.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(gj_jit), xt.grad.numpy(), rtol=1e-6, atol=1e-6)
        # vmap over rows equals the batched call; a 3-D batch works through the leading axes
        gv = jax.vmap(jax.grad(lambda v, c: (jfn(v, **kw) * c).sum()))(jnp.asarray(x), jnp.asarray(w))
        np.testing.assert_allclose(np.asarray(gv), xt.grad.numpy(), rtol=1e-6, atol=1e-6)
        x3 = jnp.asarray(np.stack([x, x]))
        np.testing.assert_array_equal(np.asarray(jfn(x3, **kw))[1], _np_fn(name)(x, **kw))


def test_jax_float64_and_spearman(jx):
    jax, sj = jx
    import jax.numpy as jnp

    def enable_x64():
        if hasattr(jax, "enable_x64"):
            return jax.enable_x64(True)
        from jax.experimental import enable_x64 as legacy  # older JAX

        return legacy()

    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 7))
    target = rng.integers(0, 3, (4, 7)).astype(float)
    with enable_x64():
        xj = jnp.asarray(x, jnp.float64)
        assert sj.soft_rank(xj).dtype == jnp.float64
        for reg in REGS:
            loss, g = jax.value_and_grad(lambda v: sj.spearman_loss(v, target, regularization_strength=0.3,
                                                                     regularization=reg))(xj)
            want, gw = proj.spearman_loss_and_grad(x, target, regularization_strength=0.3, regularization=reg)
            assert float(loss) == pytest.approx(want, rel=1e-12)
            np.testing.assert_allclose(np.asarray(g), gw, rtol=1e-9, atol=1e-12)
            m = jax.jacobian(lambda v: sj.soft_topk_mask(v, 2, regularization_strength=0.5))(xj[0])
            fd = np.stack([(proj.soft_topk_mask(x[0] + e, 2, regularization_strength=0.5)
                            - proj.soft_topk_mask(x[0] - e, 2, regularization_strength=0.5)) / 2e-6
                           for e in np.eye(7) * 1e-6], axis=1)
            np.testing.assert_allclose(np.asarray(m), fd, rtol=1e-5, atol=1e-6)
            jac = jax.jacobian(lambda v: sj.soft_rank(v, regularization=reg))(xj[1])
            np.testing.assert_allclose(np.asarray(jac), proj.jacobian(x[1], regularization=reg),
                                       rtol=1e-12, atol=1e-14)


def test_jax_bad_input(jx):
    jax, sj = jx
    import jax.numpy as jnp

    with pytest.raises(errors.UnknownMethodError):
        sj.soft_rank(jnp.zeros(3), direction="sideways")
    with pytest.raises(errors.InvalidValueError):
        sj.soft_sort(jnp.zeros(3), regularization_strength=-1.0)
    with pytest.raises(errors.InvalidValueError):
        sj.soft_topk_mask(jnp.zeros(3), 4)
    with pytest.raises(errors.ShapeError):
        sj.soft_rank(jnp.float32(1.0))


# --- one dtype policy across every JAX adapter (the torch adapters': tests/test_hardening_torch.py) ---

def _jax_calls():
    from rank.soft import jax as sj
    from rank.soft import relaxations_jax as rj

    return [lambda x: sj.soft_rank(x), lambda x: sj.soft_sort(x), lambda x: sj.soft_topk_mask(x, 2),
            lambda x: rj.relaxed_rank(x, method="neuralsort"), lambda x: rj.relaxed_rank(x, method="smoothi"),
            lambda x: rj.soft_permutation(x), lambda x: rj.soft_topk(x, 2, method="projection")]


@pytest.mark.parametrize("i", range(7))
def test_jax_adapters_share_the_dtype_policy(i):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    call = _jax_calls()[i]
    x32 = jnp.array([[0.3, -1.0, 2.0, 0.5]], jnp.float32)
    ref = call(x32)
    gref = jax.grad(lambda v: call(v).sum())(x32)
    assert ref.dtype == jnp.float32 and gref.dtype == jnp.float32
    for dtype in (jnp.float16, jnp.bfloat16):
        xl = x32.astype(dtype)
        y = call(xl)
        g = jax.grad(lambda v: call(v).sum())(xl)
        assert y.dtype == dtype and g.dtype == dtype  # computed in float32, returned in the input dtype
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref), atol=0.1, rtol=0.05)
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(gref), atol=0.1, rtol=0.05)
        jitted = jax.jit(call)(xl)  # the policy holds under jit too
        assert jitted.dtype == dtype
        np.testing.assert_array_equal(np.asarray(jitted, np.float32), np.asarray(y, np.float32))
    yi = call(jnp.array([[3, -1, 2, 0]]))  # integers: the default float
    assert yi.dtype == jnp.asarray(0.0).dtype
    np.testing.assert_allclose(np.asarray(yi), np.asarray(call(jnp.array([[3.0, -1.0, 2.0, 0.0]]))))
