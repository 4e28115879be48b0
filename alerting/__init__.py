"""Judging the unit's MQTT alerts and statuses, shared by every person's console.

``bodycam-supervisor watch`` and the archive's web console (``bodycam-archive serve``, its
live page) show the same alerts with the same verdicts: both use :mod:`alerting.judge`
(the pure decision) and :mod:`alerting.watch` (the MQTT subscription, receipts and acks),
so the two can never disagree on what is genuine. It stands on ``evidence`` and ``wire``,
and of the archive only on its signed message format (``archive.signed``).
"""
