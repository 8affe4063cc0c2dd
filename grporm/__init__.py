"""grporm: open reproduction suite for GRPO-RM (arXiv 2511.15256)."""

__version__ = "0.1.0"
