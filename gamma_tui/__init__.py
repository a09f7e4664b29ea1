"""gamma-tui: a terminal workbench for the γ–η landscape of online SGD."""

__version__ = "0.1.0"
