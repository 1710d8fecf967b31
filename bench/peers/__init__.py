"""Peer systems for the benchmark (docs/performance.md "Peers"): the same chain-3 workload on Temporal, Restate,
DBOS and Celery, each installed by ``bench/peers/setup`` into ``.venv-peers`` and run by ``bench.peers.run``
in that environment, so the core suite needs none of them."""
