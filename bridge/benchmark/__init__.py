"""Capacity benchmark tooling: load generator, bare-relay baseline, process stats, reports.

* :mod:`bridge.benchmark.loadgen` -- SIP/RTP load generator, run in its own process
  (``python -m bridge.benchmark.loadgen``) and driven over JSON lines by :class:`LoadGenerator`.
* :mod:`bridge.benchmark.relay` -- the baseline: a bare numpy N-1 relay in its own process
  (``python -m bridge.benchmark.relay``), driven by :class:`RelayProcess`.
* :mod:`bridge.benchmark.procstats` -- CPU % and RSS of a set of pids from ``/proc``.
* :mod:`bridge.benchmark.report` -- per-step results, stop criteria, table, JSON and PNG curve.

These are edges (processes, sockets, the clock), not sans-I/O cores.
"""
