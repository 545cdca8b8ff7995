"""Command-line helpers shared by the study scripts, the analysis tools and
``rim_rllib.rl.evaluate`` (standard library only)."""

import argparse


def int_at_least(low: int):
    """An argparse ``type``: an int >= ``low``; anything else is refused with a message
    naming the value."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}, got {value}")
        return value
    return parse


def float_at_least(low: float):
    """An argparse ``type``: a number >= ``low``; anything else is refused with a message
    naming the value."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number >= {low}, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be a number >= {low}, got {text}")
        return value
    return parse
