"""Benchmarks: what a session costs per request, against a bare handler and peer libraries.

Run ``scripts/bench.sh``; see ``benchmarks/README.md``.  Nothing here is
collected by pytest (``testpaths = ["tests"]``) or imported by the package.
"""
