"""Capture and replay of SIP/RTP traces (issue 15)."""
