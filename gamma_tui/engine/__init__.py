"""The training engine: the only package that imports torch (with gamma_tui.nn, the layers
for your own network, which only user code and the engine import).

Run as a worker process with `python -m gamma_tui.engine --cache DIR --shard ID,ID,...`.
"""
