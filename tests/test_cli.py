import subprocess
import sys

from coldstream.cli import COMMANDS, main
from coldstream.info import report


def test_info_lists_every_backend_with_a_reason_or_version():
    text = report()
    for name in ("torch", "cuda", "triton", "xformers", "dali", "pyav", "opencv", "torchcodec", "efficientnet_lite0"):
        assert f"  {name} " in text
    for line in text.splitlines():
        if " missing " in line:
            assert "install" in line, line  # every missing piece says how to get it


def test_unknown_command_fails_with_usage(capsys):
    assert main(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_every_command_resolves_to_a_function():
    import importlib

    for name, (_, target) in COMMANDS.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "coldstream.cli", "info"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("coldstream ")
