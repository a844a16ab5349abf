"""The chat demo driven by a real browser (Debian's headless Chromium through Playwright)."""
