"""Scenario sweeps: a grid of simulator runs on a local pool or Ray, aggregated.

``spec`` reads and expands a sweep spec; ``engines`` runs cells (serial, local process
pool, Ray); ``results`` streams rows to a resumable CSV; ``aggregate`` computes means,
medians and confidence intervals per group; ``plot`` draws them; ``driver`` ties these
together for ``vnstitch sweep``.
"""
