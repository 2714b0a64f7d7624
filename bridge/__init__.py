"""bridge: a pure-Python telephone conference bridge."""

__version__ = "0.1.0"
