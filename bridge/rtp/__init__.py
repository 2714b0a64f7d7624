"""bridge.rtp"""
