"""Command-line helpers shared by the study scripts, the analysis tools and
``rim_rllib.rl.evaluate`` (standard library only)."""

import argparse


def _at_least(convert, kind: str, low):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} >= {low}, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be {kind} >= {low}, got {text}")
        return value
    return parse


def int_at_least(low: int):
    """An argparse ``type``: an int >= ``low``; anything else is refused with a message
    naming the value."""
    return _at_least(int, "an int", low)


def float_at_least(low: float):
    """An argparse ``type``: a number >= ``low``; anything else is refused with a message
    naming the value."""
    return _at_least(float, "a number", low)
