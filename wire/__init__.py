"""What crosses a wire between the project's devices: the dock cable's frames and link,
MQTT topics, signed status messages, alert acknowledgements, and the broker settings.

It stands on :mod:`evidence` (records, keys, canonical JSON) and :mod:`daemonkit`; the
camera, the dock and the supervisor all speak through it and none of them through another.
"""
