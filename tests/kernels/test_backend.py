"""Backend dispatch: auto picks the reference on CPU tensors; an explicit backend never falls back silently."""

from __future__ import annotations

import logging

import pytest
import torch

from coldstream.kernels import _backend, gated_blend


def test_auto_uses_reference_on_cpu_and_logs_once(caplog):
    a = torch.randn(4)
    _backend._logged.clear()
    with caplog.at_level(logging.INFO, logger="coldstream.kernels"):
        gated_blend(a, a, a)
        gated_blend(a, a, a)
    msgs = [r.getMessage() for r in caplog.records if "gated_blend" in r.getMessage()]
    assert len(msgs) == 1 and "reference" in msgs[0]


def test_explicit_triton_without_interpreter_or_cuda_raises_with_reasons(monkeypatch):
    monkeypatch.setattr(_backend, "_INTERPRETING", False)  # as if TRITON_INTERPRET was unset at import ...
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # ... setting it now changes nothing (the kernels are defined)
    a = torch.randn(4)
    with pytest.raises(RuntimeError, match="backend='triton' cannot run.*TRITON_INTERPRET.*reference: available"):
        gated_blend(a, a, a, backend="triton")


def test_unknown_backend_is_rejected():
    a = torch.randn(4)
    with pytest.raises(ValueError, match="backend must be one of"):
        gated_blend(a, a, a, backend="xformers")


@pytest.mark.cuda
def test_auto_uses_triton_on_cuda():
    a = torch.randn(4, device="cuda")
    assert _backend.resolve_backend("gated_blend", "auto", [a]) == "triton"


def test_auto_backend_traces_under_torch_compile_fullgraph():
    a = torch.randn(3, 4, requires_grad=True)
    compiled = torch.compile(lambda a: gated_blend(a, 2 * a, a), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(a), gated_blend(a, 2 * a, a))


def test_package_imports_and_runs_the_reference_without_triton():
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from coldstream.kernels import gated_blend, selective_scan\n"
        "a = torch.randn(3)\n"
        "assert torch.allclose(gated_blend(a, a, a), a)\n"
        "u = torch.randn(1, 4, 3)\n"
        "selective_scan(u, u.abs(), -torch.ones(4, 2), torch.randn(1, 2, 3), torch.randn(1, 2, 3))\n"
        "try:\n"
        "    gated_blend(a, a, a, backend='triton')\n"
        "except RuntimeError as e:\n"
        "    assert 'triton is not importable' in str(e)\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Triton not available" not in run.stderr


def test_backends_reports_each_with_a_reason():
    from coldstream.kernels import backends

    status = backends()
    assert status["reference"] is None
    assert status["triton"] is None or isinstance(status["triton"], str)
