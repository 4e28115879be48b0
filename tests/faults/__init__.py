"""The fault suite: real daemons, real brokers, real kills (run alone: pytest -m faults)."""
