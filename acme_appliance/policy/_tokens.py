"""
Directory tokens: the secret in a customer's directory URL, bound to a policy
and optionally to a list of names.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence

from attrs import evolve, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..core import InvalidName, name_allowed, normalise_name
from ..storage import Store, get_record, keys, load_record, put_record
from ._policy import Policy

TOKEN_BYTES = 24  # 192 bits of randomness
#: The most secret hashes whose token ids a registry keeps (then it forgets them all).
MAX_KNOWN_IDS = 10_000


def new_secret() -> str:
    """
    A random token secret, base64url; never starting with C{-}, which a
    command line would take for an option (C{token revoke -abc...}).
    """
    while True:
        secret = secrets.token_urlsafe(TOKEN_BYTES)
        if not secret.startswith("-"):
            return secret


class UnknownToken(LookupError):
    """
    No active token matches.
    """


@frozen
class Token:
    """
    A directory token as stored: never the secret itself, only its hash.

    @ivar id: a short public identifier, safe to log and show.
    @ivar policy: the name of the policy the token is bound to.
    @ivar domains: name patterns the token is limited to (empty: the
        policy's list alone applies).
    """

    id: str
    secret_hash: str
    policy: str
    domains: tuple[str, ...]
    created: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class TokenRegistry:
    """
    Creates, finds, lists and revokes tokens in a L{Store}.
    """

    _log = Logger()

    def __init__(self, store: Store, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock
        # Secret hash -> token id, as found in the index: an index entry
        # never points elsewhere (revoking deletes it and marks the token,
        # whose record every lookup still reads), so a lookup of a known
        # secret reads the token record alone.  Misses are not kept.
        self._ids: dict[str, str] = {}

    async def create(self, policy: str, domains: tuple[str, ...] = ()) -> tuple[Token, str]:
        """
        Make a new token; return it and the secret (shown once, never stored).
        """
        secret = new_secret()
        token = Token(
            id=secrets.token_hex(6),
            secret_hash=hash_secret(secret),
            policy=policy,
            domains=domains,
            created=self._clock.seconds(),
        )
        await put_record(self._store, keys.token(token.id), token)
        await self._store.set(f"token-hash/{token.secret_hash}", token.id.encode())
        self._log.info("token {token_id} created for policy {policy}", token_id=token.id, policy=policy)
        return token, secret

    async def lookup(self, secret: str) -> Token:
        """
        The active token whose secret is C{secret}.

        @raise UnknownToken: no such token, or it was revoked.
        """
        digest = hash_secret(secret)
        token_id = self._ids.get(digest)
        if token_id is None:
            found = await self._store.get(f"token-hash/{digest}")
            if found is None:
                raise UnknownToken()
            token_id = found.decode()
            if len(self._ids) >= MAX_KNOWN_IDS:
                self._ids.clear()
            self._ids[digest] = token_id
        token = await get_record(self._store, Token, keys.token(token_id))
        # The index lookup already matched; the constant-time compare keeps a
        # corrupt or hand-edited index from authorising the wrong token.
        if token is None or not hmac.compare_digest(token.secret_hash, digest) or not token.active:
            raise UnknownToken()
        return token

    async def get(self, token_id: str) -> Token | None:
        return await get_record(self._store, Token, keys.token(token_id))

    async def list(self) -> list[Token]:
        rows = await self._store.scan(keys.TOKEN_PREFIX)
        tokens = [load_record(Token, value) for _, value in rows]
        return sorted(tokens, key=lambda t: (t.created, t.id))

    async def revoke(self, secret_or_id: str) -> Token:
        """
        Revoke the token named by its id or its secret.

        @raise UnknownToken: neither matches an active token.
        """
        token = await self.get(secret_or_id) if secret_or_id.isalnum() else None
        if token is None:
            try:
                token = await self.lookup(secret_or_id)
            except UnknownToken:
                raise UnknownToken(secret_or_id) from None
        if not token.active:
            raise UnknownToken(secret_or_id)
        revoked = evolve(token, revoked_at=self._clock.seconds())
        await put_record(self._store, keys.token(token.id), revoked)
        await self._store.delete(f"token-hash/{token.secret_hash}")
        self._log.info("token {token_id} revoked", token_id=token.id)
        return revoked


class BadTokenRequest(ValueError):
    """
    A token was asked for with an unknown policy or a name outside it.
    """


def token_domains(
    policies: Sequence[Policy], policy_name: str, domains: Iterable[str], *, label: str = "domain"
) -> tuple[str, ...]:
    """
    Check a token request (C{token create --policy P --domain D...}, or the
    admin API's): the policy exists and each name is inside it.  Returns
    the names normalised.

    @param label: how errors call a name (the CLI's C{--domain}).
    @raise BadTokenRequest: naming the policy or the name that is wrong.
    """
    policy = next((p for p in policies if p.name == policy_name), None)
    if policy is None:
        known = ", ".join(p.name for p in policies)
        raise BadTokenRequest(f"no policy named {policy_name!r} (configured: {known})")
    result = []
    for domain in domains:
        try:
            name = normalise_name(domain)
        except InvalidName as e:
            raise BadTokenRequest(f"{label} {domain!r}: {e}") from None
        if not name_allowed(name, policy.allowed_domains) and not any(
            name_allowed(p, [name]) for p in policy.allowed_domains
        ):
            raise BadTokenRequest(
                f"{label} {name!r} is outside policy {policy.name!r} (allowed: {', '.join(policy.allowed_domains)})"
            )
        result.append(name)
    return tuple(result)
