"""``python -m anthropic_rx``: the ``anthropic-rx`` command line."""

from anthropic_rx.cli import run

if __name__ == "__main__":
    run()
