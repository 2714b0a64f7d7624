"""bridge.media"""
