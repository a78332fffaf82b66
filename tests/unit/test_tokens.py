"""
Token secrets.
"""

from __future__ import annotations

import secrets
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.policy import _tokens


class SecretTests(SynchronousTestCase):
    def test_never_looks_like_an_option(self) -> None:
        """
        A secret starting with C{-} would read as an option to
        C{acme-appliance token revoke}: such draws are discarded.
        """
        draws = iter(["-starts-with-dash", "-again", "fine-secret"])
        with mock.patch.object(secrets, "token_urlsafe", lambda n: next(draws)):
            self.assertEqual(_tokens.new_secret(), "fine-secret")

    def test_length(self) -> None:
        # 24 random bytes: 32 base64url characters, 192 bits.
        self.assertEqual(len(_tokens.new_secret()), 32)
