"""bridge.web: the HTTP API of ``bridge serve`` (``start_web`` is the composition root's hook)."""

from bridge.web.app import start_web

__all__ = ["start_web"]
