"""The app's JWT, signed with a key parsed once.

githubkit signs each app JWT from the PEM text, which parses and validates the
RSA key every time: 70-100 ms of CPU on this machine, on the event loop, so
every webhook acknowledgement in flight waited for it (once per 8 minutes, the
JWT's cache life, and at the first token mint). Parsing the key once at start-up
leaves a signature of about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from githubkit.auth.app import AppAuth, AppAuthStrategy


@dataclass
class PreloadedAppAuth(AppAuth):
    signing_key: Any = None

    def _create_jwt(self) -> str:
        # As githubkit does: issued a minute ago against clock drift, valid 10 minutes.
        issued = datetime.now(UTC) - timedelta(minutes=1)
        return jwt.encode(
            {"iss": self.issuer, "iat": issued, "exp": issued + timedelta(minutes=10)},
            self.signing_key,
            algorithm="RS256",
        )


@dataclass
class PreloadedAppAuthStrategy(AppAuthStrategy):
    """``AppAuthStrategy`` whose JWTs are signed with an already parsed key."""

    signing_key: Any = None

    def get_auth_flow(self, github: Any) -> httpx.Auth:
        return PreloadedAppAuth(
            github,
            self.app_id,
            self.private_key,
            self.client_id,
            self.client_secret,
            signing_key=self.signing_key,
        )
