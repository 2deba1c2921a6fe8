"""sortloop station runtime: capture → detect → track → decide → route → record."""

__version__ = "0.1.0"
