"""bridge.codecs: G.711 mu-law/A-law on numpy tables."""

from bridge.codecs.g711 import Codec

__all__ = ["Codec"]
