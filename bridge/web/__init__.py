"""bridge.web"""
