"""bridge.sdp"""
