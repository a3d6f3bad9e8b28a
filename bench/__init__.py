"""warpd's benchmark suite: ``python -m bench [NAME ...] [--quick]``.

Each benchmark measures warpd and its baseline side by side in the same run
and prints medians of several runs and their ratios, never a lone absolute
time: the machines this runs on are shared and noisy. See docs/benchmarks.md.
"""
