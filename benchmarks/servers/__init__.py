"""One small server program per contender, each run as its own process by the runner.

Every program listens on 127.0.0.1 (a free port), serves SSE at ``/events`` (and
WebSocket at ``/ws`` where it has one), and is driven by the control loop of
:mod:`benchmarks.servers.base`.
"""
