"""
The operator's command line: C{acme-appliance token|ca|renew-now ...}.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from ._appliance import IApplianceReactor, StartupError, announce, local_ca, open_store
from .acme import directory_url
from .config import Config, ConfigError, load_config
from .core import InvalidName, normalise_name
from .notify import EventName, PolicyEvent
from .orders import AcmeRepository, RenewalWindows
from .policy import BadTokenRequest, TokenRegistry, UnknownToken, token_domains
from .storage import StorageError


class CommandError(Exception):
    """
    The command failed; the message is one line for the operator.
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: a subcommand's unset --config must not hide one given before it.
    common.add_argument(
        "--config", "-c", metavar="FILE", default=argparse.SUPPRESS, help="the appliance's TOML config file"
    )
    parser = _Parser(prog="acme-appliance", description="Operate an acme-appliance.", parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    token = commands.add_parser("token", help="directory tokens", parents=[common])
    token_commands = token.add_subparsers(dest="action", required=True, parser_class=_Parser)
    create = token_commands.add_parser("create", help="make a directory URL", parents=[common])
    create.add_argument("--policy", required=True, help="the policy the token is bound to")
    create.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="D",
        help="limit the token to this name or *.pattern (repeatable)",
    )
    token_commands.add_parser("list", help="list tokens", parents=[common])
    revoke = token_commands.add_parser("revoke", help="revoke a token", parents=[common])
    revoke.add_argument("token", metavar="TOKEN_OR_ID")

    ca = commands.add_parser("ca", help="certificate authorities", parents=[common])
    ca_commands = ca.add_subparsers(dest="action", required=True, parser_class=_Parser)
    root = ca_commands.add_parser("root", help="print a local CA's root certificate", parents=[common])
    root.add_argument("name")

    renew = commands.add_parser(
        "renew-now",
        help="move the renewal windows of the current certificates for names into the past",
        parents=[common],
    )
    renew.add_argument("names", nargs="+", metavar="NAME", help="a DNS name the certificates cover")
    return parser


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _check_domains(config: Config, policy_name: str, domains: Sequence[str]) -> tuple[str, ...]:
    try:
        return token_domains(config.policies, policy_name, domains, label="--domain")
    except BadTokenRequest as e:
        raise CommandError(str(e)) from None


async def _run(reactor: IApplianceReactor, args: argparse.Namespace, out: Any) -> None:
    config = load_config(args.config)
    if args.command == "ca":
        out.write(local_ca(config, args.name, reactor).root_pem().decode())
        return
    if args.command == "renew-now":
        await _renew_now(reactor, config, args.names, out)
        return
    domains = _check_domains(config, args.policy, args.domain) if args.action == "create" else ()
    store = await open_store(config, reactor)
    try:
        tokens = TokenRegistry(store, reactor)
        if args.action == "create":
            token, secret = await tokens.create(args.policy, domains)
            out.write(f"token {token.id} for policy {token.policy}")
            out.write(f" limited to {', '.join(domains)}\n" if domains else "\n")
            out.write("Point ACME clients at this directory URL (it is a secret; it is not shown again):\n")
            out.write(directory_url(config.acme.base_url, secret) + "\n")
            await announce(
                config,
                store,
                reactor,
                PolicyEvent,
                name=EventName.TOKEN_CREATED,
                token_id=token.id,
                names=domains,
                policy=token.policy,
            )
        elif args.action == "list":
            out.write(f"{'ID':<14}{'POLICY':<16}{'STATUS':<10}{'CREATED':<22}DOMAINS\n")
            for token in await tokens.list():
                status = "active" if token.active else "revoked"
                domains_text = ",".join(token.domains) or "(policy)"
                out.write(f"{token.id:<14}{token.policy:<16}{status:<10}{_when(token.created):<22}{domains_text}\n")
        else:
            try:
                token = await tokens.revoke(args.token)
            except UnknownToken:
                raise CommandError("no active token with that id or secret") from None
            out.write(f"revoked token {token.id}\n")
            await RenewalWindows(AcmeRepository(store), reactor).token_revoked(token.id)
            await announce(
                config,
                store,
                reactor,
                PolicyEvent,
                name=EventName.TOKEN_REVOKED,
                token_id=token.id,
                names=token.domains,
                policy=token.policy,
            )
    finally:
        await store.close()


async def _renew_now(reactor: IApplianceReactor, config: Config, names: Sequence[str], out: Any) -> None:
    try:
        normalised = [normalise_name(name) for name in names]
    except InvalidName as e:
        raise CommandError(str(e)) from None
    store = await open_store(config, reactor)
    try:
        moved = await RenewalWindows(AcmeRepository(store), reactor).renew_now(normalised)
    finally:
        await store.close()
    out.write(f"moved the renewal windows of {moved} certificate(s) into the past\n")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = _parser().parse_args(argv)
    if not getattr(args, "config", None):
        _parser().error("--config FILE is required")

    def run(reactor: IApplianceReactor) -> Deferred[None]:
        async def guarded() -> None:
            try:
                await _run(reactor, args, sys.stdout)
            except (CommandError, ConfigError, StartupError, StorageError) as e:
                sys.stderr.write(f"acme-appliance: {e}\n")
                raise SystemExit(1) from None

        return Deferred.fromCoroutine(guarded())

    react(run)


if __name__ == "__main__":
    main()
