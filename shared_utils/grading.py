"""Helpers for the test cells of the assignments: comparisons that explain themselves.

A failing visible test should tell a student what is wrong in words they can act on, so
these helpers raise ``AssertionError`` with the name of the quantity, the expected and
actual shapes or values, and a hint. Hidden tests use :func:`reference_disabled` so that a
submission that merely calls the kit's reference implementation fails.

Used by every assignment (set up in a01).
"""
from __future__ import annotations

import contextlib
import importlib
import pkgutil

import torch


def check_tensor(value, name: str = "result") -> torch.Tensor:
    """Fail unless ``value`` is a torch tensor (a common slip: returning a float or numpy)."""
    assert isinstance(value, torch.Tensor), (
        f"{name} should be a torch.Tensor, but got {type(value).__name__}. "
        "Compute it with torch operations on the input tensors.")
    return value


def check_shape(value, shape: tuple, name: str = "result", hint: str = "") -> None:
    """Fail unless ``value`` is a tensor of exactly ``shape``."""
    check_tensor(value, name)
    assert tuple(value.shape) == tuple(shape), (
        f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}. {hint}".strip())


def check_close(actual, expected, name: str = "result", atol: float = 1e-5, rtol: float = 1e-4,
                hint: str = "") -> None:
    """Fail unless ``actual`` matches ``expected`` (tensors or numbers) within tolerances.

    The message shows both values (or the worst-matching entry) and ``hint``.
    """
    if not isinstance(expected, torch.Tensor):
        expected = torch.tensor(expected, dtype=torch.float64)
    if not isinstance(actual, torch.Tensor):
        try:
            actual = torch.tensor(actual, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise AssertionError(f"{name} should be a number or tensor, got {type(actual).__name__}.")
    assert actual.shape == expected.shape, (
        f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}. {hint}".strip())
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert not torch.isnan(a).any() or torch.isnan(e).any(), (
        f"{name} contains NaN. Look for log(0), 0/0 or overflow. {hint}".strip())
    if not torch.allclose(a, e, atol=atol, rtol=rtol, equal_nan=True):
        err = (a - e).abs().flatten()
        i = int(torch.nan_to_num(err, nan=float("inf")).argmax())
        where = f" (worst at flat index {i})" if a.numel() > 1 else ""
        raise AssertionError(f"{name} is {a.flatten()[i].item():.6g}, expected {e.flatten()[i].item():.6g}"
                             f"{where}. {hint}".strip())


def check_no_grad(value, name: str = "result", hint: str = "") -> None:
    """Fail if ``value`` carries a gradient (e.g. a reward that should have been detached)."""
    check_tensor(value, name)
    assert not value.requires_grad, (
        f"{name} requires grad, but it should be a constant for the optimizer. "
        f"Use .detach(). {hint}".strip())


def check_raises(fn, exc_type, name: str, hint: str = "") -> None:
    """Fail unless calling ``fn()`` raises ``exc_type``."""
    try:
        fn()
    except exc_type:
        return
    except Exception as e:  # wrong kind of error
        raise AssertionError(f"{name} raised {type(e).__name__}: {e}; expected {exc_type.__name__}. "
                             f"{hint}".strip())
    raise AssertionError(f"{name} did not raise {exc_type.__name__}. {hint}".strip())


class ReferenceUsed(RuntimeError):
    """Raised when a graded function calls the kit's own reference implementation."""


def _kit_modules():
    import shared_utils
    for info in pkgutil.iter_modules(shared_utils.__path__):
        yield importlib.import_module(f"shared_utils.{info.name}")


@contextlib.contextmanager
def reference_disabled(*names: str, namespace: dict | None = None):
    """While active, every ``shared_utils`` function called one of ``names`` raises.

    Patches the kit's modules and, if given, the notebook's ``namespace`` (pass
    ``globals()``) wherever it holds one of those functions under any name — so a graded
    function that just calls the reference fails the hidden test, however it was imported.
    """
    patched = []
    originals = set()
    for module in _kit_modules():
        for name in names:
            fn = getattr(module, name, None)
            if callable(fn) and getattr(fn, "__module__", "").startswith("shared_utils"):
                originals.add(fn)
                patched.append((vars(module), name, fn))
    def blocker(name):
        def blocked(*args, **kwargs):
            raise ReferenceUsed(f"your function called the kit's reference `{name}`; "
                                "this test checks your own implementation.")
        return blocked
    if namespace is not None:
        for key, value in list(namespace.items()):
            if any(value is fn for fn in originals):
                patched.append((namespace, key, value))
    try:
        for ns, key, value in patched:
            ns[key] = blocker(getattr(value, "__name__", key))
        yield
    finally:
        for ns, key, value in patched:
            ns[key] = value
