"""RFC 6238 codes (HMAC-SHA-1, 30-second steps, 6 digits), as an authenticator app computes them:
the pytest suite and make load (scripts/load.py) sign in with them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time


def totp(secret: str, offset_steps: int = 0, at: float | None = None) -> str:
    """The code of the base32 `secret` now (or at `at`), `offset_steps` 30-second steps away."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    step = int((at if at is not None else time.time()) // 30) + offset_steps
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"
