"""Tests of anthropic_rx.testing, the fake Messages API."""
