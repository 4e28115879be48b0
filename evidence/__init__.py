"""The signed, hash-chained evidence journal shared by the camera, the dock and the verifier.

Both ``firmware`` and ``dock`` import this package; neither imports the other.
"""

FORMAT_VERSION = 1
