"""hfkit's version (one place; `hfkit.__version__` reads it)."""
__version__ = "0.1.0"
