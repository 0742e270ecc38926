from pathlib import Path

from coldstream.config import load_config
from coldstream.train.demo import DemoConfig


def test_builtin_defaults_are_the_committed_demo_config():
    """The README's first command runs `coldstream demo` on its built-in defaults; configs/demo.yaml writes them out."""
    yaml = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    assert load_config(DemoConfig) == load_config(DemoConfig, yaml)
