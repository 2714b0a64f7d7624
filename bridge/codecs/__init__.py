"""bridge.codecs"""
