"""The distribution's version, in a module of its own (layer 0: it imports nothing).

``tornadose.__version__`` re-exports it, the build reads it (``pyproject.toml``), and
``tornadose --version`` prints it, without any of them loading the facade package's
names.
"""

__version__ = "1.0.0.dev0"
