"""coldstream: streaming video models from a frozen image foundation model plus a trained recurrent core."""

__version__ = "0.1.0"
