"""
Twisted server endpoint descriptions: checked without listening, and
rewritten with absolute paths.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import NoReturn

from attrs import frozen

# Twisted's own tokenizer for endpoint descriptions (private, but it is the
# grammar serverFromString uses, '\' escapes included): ssl: paths must be
# taken apart and rewritten without loading the files.
from twisted.internet.endpoints import _parse as _parse_endpoint
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from ._table import Problem, did_you_mean
from ._values import readable

_TCP_ARGS = ("port", "interface", "backlog")
_SSL_ARGS = ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog", "extraCertChain", "dhParameters")
_UNIX_ARGS = ("address", "mode", "backlog", "lockfile")
_ENDPOINT_ARGS = {"tcp": _TCP_ARGS, "tcp6": _TCP_ARGS, "ssl": _SSL_ARGS, "unix": _UNIX_ARGS}


@frozen
class Endpoint:
    """
    A checked description; C{cert} and C{key} are the absolute TLS paths of
    an C{ssl:} one.
    """

    description: str
    cert: str | None = None
    key: str | None = None


def check_endpoint(key: str, description: str, resolve: Callable[[str], str], *, tls_may_be_missing: bool) -> Endpoint:
    """
    Check a server endpoint description: C{tcp:}, C{tcp6:}, C{ssl:} and
    C{unix:} ones option by option, plugin types by Twisted.

    @param resolve: makes a path in the description absolute.
    @param tls_may_be_missing: the C{ssl:} files are generated at start-up.
    @raise Problem: naming C{key}.
    """
    try:
        args, kwargs = _parse_endpoint(description)
    except (ValueError, RuntimeError):
        # A trailing backslash has nothing to escape.
        raise Problem(key, f"{description!r} is not a valid endpoint description") from None
    kind = args[0]
    if kind not in _ENDPOINT_ARGS:
        return _other_endpoint(key, description)
    return _Check(key, description, kind, resolve).run(args[1:], kwargs, tls_may_be_missing)


class _Check:
    """
    One C{tcp:}, C{tcp6:}, C{ssl:} or C{unix:} description being checked.
    """

    def __init__(self, key: str, description: str, kind: str, resolve: Callable[[str], str]) -> None:
        self.key = key
        self.description = description
        self.kind = kind
        self.names = _ENDPOINT_ARGS[kind]
        self.resolve = resolve

    def fail(self, problem: str) -> NoReturn:
        raise Problem(self.key, f"{self.description!r}: {problem}")

    def run(self, args: list[str], kwargs: dict[str, str], tls_may_be_missing: bool) -> Endpoint:
        options = self.options(args, kwargs)
        if self.kind == "unix":
            self.unix(options)
        else:
            port = options.get("port", "")
            if not (port.isascii() and port.isdigit()) or int(port) > 65535:
                self.fail(f"port {port!r} is not a number from 0 to 65535")
        self.common(options)
        cert = private = None
        if self.kind == "ssl":
            private, cert = self.tls_files(options)
        rewritten = self.rewrite(options) if self.kind in ("ssl", "unix") else self.description
        if self.kind == "ssl" and tls_may_be_missing:
            # The TLS files are generated at start-up; nothing to load yet.
            for path, option in ((private, "privateKey"), (cert, "certKey")):
                if path is not None and os.path.isdir(path):
                    self.fail_plain(f"{option} {path!r} is a directory")
        else:
            self.load(rewritten, private, cert)
        return Endpoint(rewritten, cert, private)

    def fail_plain(self, problem: str) -> NoReturn:
        raise Problem(self.key, problem)

    def options(self, args: list[str], kwargs: dict[str, str]) -> dict[str, str]:
        if len(args) > len(self.names):
            self.fail(f"too many ':'-separated values for a {self.kind} endpoint")
        options = dict(zip(self.names, args))
        for option, value in kwargs.items():
            if option not in self.names:
                self.fail(f"unknown option {option!r} for a {self.kind} endpoint{did_you_mean(option, self.names)}")
            if option in options:
                self.fail(f"{option} is given twice")
            options[option] = value
        return options

    def unix(self, options: dict[str, str]) -> None:
        if not options.get("address"):
            self.fail("a unix endpoint needs a socket path")
        options["address"] = self.resolve(options["address"])
        mode = options.get("mode")
        if mode is not None and not re.fullmatch("[0-7]{1,4}", mode):
            self.fail(f"mode {mode!r} is not an octal permission such as 660")
        if options.get("lockfile", "1") not in ("0", "1"):
            self.fail("lockfile must be 0 or 1")

    def common(self, options: dict[str, str]) -> None:
        interface = options.get("interface")
        if interface:
            try:
                ipaddress.ip_address(interface)
            except ValueError:
                self.fail(f"interface {interface!r} is not an IP address")
        backlog = options.get("backlog")
        if backlog is not None and not (backlog.isascii() and backlog.isdigit() and int(backlog) > 0):
            self.fail(f"backlog {backlog!r} is not a positive number")

    def tls_files(self, options: dict[str, str]) -> tuple[str, str]:
        if "privateKey" not in options:
            self.fail("an ssl endpoint needs privateKey=FILE (and certKey=FILE)")
        for option in ("privateKey", "certKey", "extraCertChain", "dhParameters"):
            if option in options:
                options[option] = self.resolve(options[option])
        private = options["privateKey"]
        cert = options.setdefault("certKey", private)
        for option in ("extraCertChain", "dhParameters"):
            if option in options:
                readable(self.key, options[option], option)
        return private, cert

    def rewrite(self, options: dict[str, str]) -> str:
        first = self.names[0]
        return ":".join(
            [self.kind, _escape(options[first])]
            + [f"{option}={_escape(value)}" for option, value in options.items() if option != first]
        )

    def load(self, rewritten: str, private: str | None, cert: str | None) -> None:
        if self.kind == "ssl":
            readable(self.key, private or "", "privateKey")
            readable(self.key, cert or "", "certKey")
        try:
            serverFromString(MemoryReactor(), rewritten)
        except Exception as e:
            what = "cannot set up TLS" if self.kind == "ssl" else "invalid endpoint"
            self.fail(f"{what}: {e or type(e).__name__}")


def _other_endpoint(key: str, description: str) -> Endpoint:
    # A plugin endpoint type: let Twisted check it, on a reactor that
    # cannot listen.
    try:
        serverFromString(MemoryReactor(), description)
    except ValueError as e:
        if str(e).startswith("Unknown endpoint type"):
            forms = "tcp:PORT, ssl:PORT:privateKey=...:certKey=... or unix:PATH"
            raise Problem(key, f"{description!r}: unknown endpoint type (use {forms})") from None
        raise Problem(key, f"{description!r}: {e}") from None
    except Exception as e:
        raise Problem(key, f"{description!r}: invalid endpoint: {e or type(e).__name__}") from None
    return Endpoint(description)


def _escape(value: str) -> str:
    # Twisted's endpoint grammar: ':' and '=' separate, '\' escapes.
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")
