"""The fault suite (issue 13): each fault survived, against the real daemons. Run it alone
with `pytest -m faults`."""
