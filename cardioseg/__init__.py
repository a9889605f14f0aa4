"""cardioseg: cardiac cine MRI segmentation with few expert labels."""

__version__ = "0.1.0"
