"""``python -m anthropic_rx.demo``: serve the chat demo with the environment's settings."""

from . import DemoSettings, run

if __name__ == "__main__":
    run(DemoSettings.from_env())
