"""bridge.ivr"""
