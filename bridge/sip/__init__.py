"""bridge.sip"""
