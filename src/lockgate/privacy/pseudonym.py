"""User ids as keyed pseudonyms: `u_` and 16 hex digits of HMAC-SHA256(install key, user id).

The same user always gets the same pseudonym in one install (sticky rollout assignment and feedback
need that), and without the install secret nobody can tell which user a pseudonym stands for, even
by hashing every user id they can think of. 64 bits keep collisions out of reach for any realistic
number of users.
"""

from __future__ import annotations

import hashlib
import hmac

from lockgate.privacy.secret import derive_key


class Pseudonyms:
    def __init__(self, install_secret: bytes) -> None:
        self._key = derive_key(install_secret, "pseudonym")

    def of(self, user_id: str) -> str:
        return "u_" + hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
