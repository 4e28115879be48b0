"""The bytes a dock signs when it receipts a camera's journal up to a record.

Part of the evidence format, not only of the cable: the camera journals each receipt it
acted on, and a verifier checks it years later with nothing but the journal and the
registry. :mod:`wire.cable` carries the signature; this module says what it covers.
"""

from __future__ import annotations

from typing import Any

from .canonical import canonical_bytes

RECEIPT_PURPOSE = "bodycam-receipt-v1"
RECEIPT_PURPOSE_V2 = "bodycam-receipt-v2"


def receipt_message(
    dock: str,
    device: str,
    upto_seq: int,
    upto_hash: str,
    session: tuple[str, str] | None = None,
) -> bytes:
    """The bytes a dock signs in a receipt (and a camera or verifier checks).

    ``session`` is ``(nonce, camera_nonce)`` of the docking that gave it (``bodycam-receipt-v2``):
    a receipt made for one session is refused in any other, so a copied or replayed receipt
    never makes a camera wipe. None is the older, unbound ``bodycam-receipt-v1``, which a
    camera no longer accepts and a verifier still checks in old journals.
    """
    message: dict[str, Any] = {
        "purpose": RECEIPT_PURPOSE,
        "dock": dock,
        "device": device,
        "upto_seq": upto_seq,
        "upto_hash": upto_hash,
    }
    if session is not None:
        message.update(purpose=RECEIPT_PURPOSE_V2, nonce=session[0], camera_nonce=session[1])
    return canonical_bytes(message)
