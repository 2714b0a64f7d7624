"""bridge.conference"""
