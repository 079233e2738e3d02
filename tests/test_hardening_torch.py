"""Device and dtype policy of the PyTorch adapters (there is no GPU here: devices are checked
with the 'meta' device, which holds no data, and with the default-device switch).

- rank.learn.torch is plain tensor algebra: it must create every tensor on the device of its
  inputs. Run with CPU inputs while the default device is 'meta': a tensor created without an
  explicit device would land on 'meta' and the call would fail on mixed devices.
- The kernel-backed adapters (rank.soft.torch, rank.soft.relaxations_torch) copy a tensor of
  another device to the CPU and put the result back on the input's device.
- float16 / bfloat16 inputs are computed in float32 and returned (values and gradients) in
  their own dtype.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rank.learn import torch as learn_torch  # noqa: E402
from rank.soft import _torch_io  # noqa: E402
from rank.soft import relaxations_torch, torch as soft_torch  # noqa: E402

LOSSES = ["ranknet", "pairwise_hinge", "listnet", "listmle", "approx_ndcg", "lambdarank", "soft_ndcg"]


def _batch(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 6, generator=g).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 3, (3, 6), generator=g)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    return scores, labels, mask


@pytest.mark.parametrize("name", LOSSES)
def test_learn_losses_create_tensors_on_the_inputs_device(name):
    scores, labels, mask = _batch()
    expected = getattr(learn_torch, name)(scores, labels, mask)
    with torch.device("meta"):  # any tensor created without device= would be a meta tensor
        loss = getattr(learn_torch, name)(scores, labels, mask)
        loss.backward()
    assert loss.device.type == "cpu" and scores.grad.device.type == "cpu"
    assert torch.allclose(loss, expected)


@pytest.mark.parametrize("call", [
    lambda x: soft_torch.soft_rank(x), lambda x: soft_torch.soft_sort(x), lambda x: soft_torch.soft_topk_mask(x, 2),
    lambda x: relaxations_torch.relaxed_rank(x, method="neuralsort"),
    lambda x: relaxations_torch.relaxed_rank(x, method="smoothi"), lambda x: relaxations_torch.soft_permutation(x),
    lambda x: relaxations_torch.soft_topk(x, 2, method="projection"),
])
def test_kernel_adapters_follow_the_input_device_and_dtype(call):
    x = torch.tensor([[0.3, -1.0, 2.0, 0.5]], requires_grad=True)
    with torch.device("meta"):
        out = call(x)
        out.sum().backward()
    assert out.device.type == "cpu" and x.grad.device.type == "cpu"
    ref = call(x.detach().double()).float()
    for dtype in (torch.float16, torch.bfloat16):
        xl = x.detach().to(dtype).requires_grad_(True)
        y = call(xl)
        y.sum().backward()
        assert y.dtype == dtype and xl.grad.dtype == dtype
        assert torch.allclose(y.float(), ref, atol=0.1, rtol=0.05)


def test_non_cpu_tensors_are_copied_to_the_cpu_not_refused():
    x = torch.ones(2, 3, device="meta")  # a device without data: the copy itself is what fails
    with pytest.raises(NotImplementedError):
        soft_torch.soft_rank(x)
    with pytest.raises(NotImplementedError):
        relaxations_torch.relaxed_rank(x)
    back = _torch_io.place(np.ones((2, 3), np.float32), torch.device("meta"), torch.float16)
    assert back.device.type == "meta" and back.dtype == torch.float16  # results go back where the input was


@pytest.mark.parametrize("name", ["ranknet", "lambdarank", "listnet", "soft_ndcg"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_learn_losses_upcast_half_precision(name, dtype):
    scores, labels, mask = _batch(dtype)
    loss = getattr(learn_torch, name)(scores, labels, mask)
    loss.backward()
    assert loss.dtype == dtype and scores.grad.dtype == dtype
    ref = getattr(learn_torch, name)(scores.detach().float(), labels, mask)
    assert torch.allclose(loss.float(), ref, rtol=1e-2, atol=1e-2)


def test_wrong_types_are_clean_errors():
    from rank.errors import DTypeError

    with pytest.raises(DTypeError):
        soft_torch.soft_rank(np.ones(3))
    with pytest.raises(DTypeError):
        soft_torch.soft_rank(torch.ones(3, dtype=torch.complex64))
    with pytest.raises(DTypeError):
        learn_torch.ranknet(torch.ones(2, 3, dtype=torch.int64), torch.zeros(2, 3))


@pytest.mark.parametrize("call", [
    lambda x: soft_torch.soft_rank(x), lambda x: soft_torch.soft_topk_mask(x, 2),
    lambda x: relaxations_torch.relaxed_rank(x, method="sigmoid"), lambda x: relaxations_torch.soft_permutation(x),
    lambda x: relaxations_torch.softrank_ndcg(x, [[1, 0, 2, 0]]),
])
def test_every_kernel_adapter_has_one_input_policy(call):
    """One wrapper, one policy: floating tensors only; non-tensors and integer tensors are refused alike."""
    from rank.errors import DTypeError
    from rank.soft._torch_io import KernelFunction

    for bad in (np.ones((1, 4)), [[0.3, -1.0, 2.0, 0.5]], torch.ones(1, 4, dtype=torch.int64),
                torch.ones(1, 4, dtype=torch.bool)):
        with pytest.raises(DTypeError, match="values"):
            call(bad)
    x = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    out = call(x)
    assert type(out.grad_fn).__name__ == KernelFunction.__name__ + "Backward"
    with pytest.raises(RuntimeError):  # first-order only: a second derivative is refused, never wrong
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        g.sum().backward()


def test_linear_gain_with_huge_grades_needs_no_table():
    scores = torch.tensor([[0.0, 1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[2**31 - 1, 0, 0]])
    loss = learn_torch.approx_ndcg(scores, labels, gain="linear")  # a 2**31-entry table would be 16 GiB
    small = learn_torch.approx_ndcg(scores, torch.tensor([[1, 0, 0]]), gain="linear")
    assert torch.allclose(loss, small)  # one relevant item: NDCG does not depend on its gain
