"""OkraInsight: okra segmentation and tip-break verdict from a phone camera."""

__version__ = "0.1.0"
