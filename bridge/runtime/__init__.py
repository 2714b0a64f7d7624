"""bridge.runtime"""
