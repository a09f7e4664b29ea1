"""The training engine: the only package that imports torch.

Run as a worker process with `python -m gamma_tui.engine --cache DIR --shard ID,ID,...`.
"""
