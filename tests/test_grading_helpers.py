import pytest
import torch

from shared_utils import grading, plotting


def test_check_close_messages():
    grading.check_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7]))
    with pytest.raises(AssertionError, match="shape"):
        grading.check_close(torch.zeros(3), torch.zeros(2), "loss")
    with pytest.raises(AssertionError, match=r"loss is 2, expected 1.*sign"):
        grading.check_close(torch.tensor(2.0), torch.tensor(1.0), "loss", hint="Check the sign.")
    with pytest.raises(AssertionError, match="NaN"):
        grading.check_close(torch.tensor(float("nan")), torch.tensor(1.0))


def test_check_helpers():
    with pytest.raises(AssertionError, match="torch.Tensor"):
        grading.check_tensor(1.0, "x")
    with pytest.raises(AssertionError, match="detach"):
        grading.check_no_grad(torch.ones(2, requires_grad=True), "reward")
    grading.check_raises(lambda: int("x"), ValueError, "int")
    with pytest.raises(AssertionError, match="did not raise"):
        grading.check_raises(lambda: None, ValueError, "noop")


def test_reference_disabled_blocks_module_and_namespace():
    from shared_utils import plotting as pl
    ns = {"sm": pl.smooth}
    with grading.reference_disabled("smooth", namespace=ns):
        with pytest.raises(grading.ReferenceUsed):
            pl.smooth([1, 2, 3])
        with pytest.raises(grading.ReferenceUsed):
            ns["sm"]([1, 2, 3])
    assert len(pl.smooth([1, 2, 3], 2)) == 3 and ns["sm"] is pl.smooth


def test_plotting_smoke():
    import matplotlib
    matplotlib.use("Agg")
    assert plotting.smooth([0, 2, 4], 2).tolist() == [0, 1, 3]
    ax = plotting.training_curves({"loss": [3, 2, 1]})
    plotting.reward_vs_kl([0, 1, 4], {"gold": [0, 1, 0]}, ax=ax)
    plotting.histograms({"a": [1, 2], "b": [2, 3]})
    assert "a" in plotting.table([{"a": 1.0, "b": "x"}])
