"""The fault suite (issue 13): real daemons under unplugs, full disks and crashes.

Marked ``faults`` so that it can run alone: ``pytest -m faults``.
"""
