"""The terminal app (textual): launcher, live dashboard, collapse view and run browser.

Only this package imports textual, and nothing in it imports torch: training runs in worker
processes and reaches the app through the run cache alone.
"""
