"""bridge.store"""
