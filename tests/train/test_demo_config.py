from pathlib import Path

from coldstream.train.demo import load_demo_config


def test_builtin_defaults_are_the_committed_demo_config():
    """The README's first command runs `coldstream demo` on its built-in defaults; configs/demo.yaml writes them out."""
    yaml = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    assert load_demo_config(None, []) == load_demo_config(str(yaml), [])
