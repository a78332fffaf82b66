"""
Tests for L{acme_appliance.config}: every rule has a config that breaks it,
and the one-line error must name the file, the key and the problem.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.endpoints import _parse as parse_endpoint
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance import config as config_module
from acme_appliance.config import CAKind, Config, ConfigError, load_config, state_path
from acme_appliance.policy import KeyType, ValidationMethod
from acme_appliance.storage import Fsync

ETC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etc")
HMAC_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def to_toml(data: dict[str, Any]) -> str:
    """
    A small TOML writer for tests: scalars, arrays of scalars, tables and
    arrays of tables.  JSON strings, numbers, booleans and arrays are TOML.
    """
    lines = [f"{k} = {_value(v)}" for k, v in data.items() if not isinstance(v, (dict, list)) or _scalars(v)]
    for name, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {_value(v)}" for k, v in value.items())
        elif isinstance(value, list) and not _scalars(value):
            for table in value:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    text = json.dumps(value, ensure_ascii=False)
    # JSON leaves DEL raw; TOML wants every control character escaped.
    return text.replace("\x7f", "\\u007f")


def _scalars(value: Any) -> bool:
    return isinstance(value, list) and not any(isinstance(v, dict) for v in value)


BASE: dict[str, Any] = {
    "acme": {"listen": "tcp:8443:interface=127.0.0.1", "base_url": "https://acme.example.net:8443"},
    "storage": {"url": "sqlite:state.db", "state_dir": "var"},
    "validation": {"fileproxy_listen": "tcp:8080", "dns_zone": "dcv.example.net"},
    "ca": [
        {"name": "builtin", "kind": "local"},
        {"name": "le", "kind": "acme", "directory": "https://acme.example.org/directory"},
    ],
    "policy": [{"name": "shop", "primary_ca": "builtin", "validation": "none", "allowed_domains": ["example.com"]}],
}


def make_tls(directory: str, key_name: str = "tls.key", cert_name: str = "tls.pem") -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme.test")])
    start = datetime.datetime(2020, 1, 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=36500))
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, key_name)
    cert_path = os.path.join(directory, cert_name)
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class ConfigTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def write(self, text: str, name: str = "appliance.toml") -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def data(self, change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        data = copy.deepcopy(BASE)
        if change is not None:
            change(data)
        return data

    def load(self, change: Callable[[dict[str, Any]], None] | None = None) -> Config:
        return load_config(self.write(to_toml(self.data(change))))

    def error(self, change: Callable[[dict[str, Any]], None] | str) -> ConfigError:
        text = change if isinstance(change, str) else to_toml(self.data(change))
        path = self.write(text)
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertNotIn("\n", str(e))
        self.assertTrue(str(e).startswith(path + ": "), str(e))
        return e

    def assertProblem(
        self, change: Callable[[dict[str, Any]], None] | str, key: str | None, *fragments: str
    ) -> ConfigError:
        """
        Loading the changed config fails with C{"<file>: <key>: ..."}
        containing every fragment.
        """
        e = self.error(change)
        path = os.path.join(self.dir, "appliance.toml")
        prefix = f"{path}: {key}: " if key else f"{path}: "
        self.assertTrue(str(e).startswith(prefix), f"{str(e)!r} does not start with {prefix!r}")
        self.assertEqual(e.key, key)
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        return e


def setting(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data.setdefault(section, {})[key] = value

    return change


def removing(section: str, key: str | None = None) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        if key is None:
            del data[section]
        else:
            del data[section][key]

    return change


def ca_setting(index: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["ca"][index][key] = value

    return change


def policy_setting(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["policy"][0][key] = value

    return change


class FileTests(ConfigTestCase):
    def test_missing(self) -> None:
        path = os.path.join(self.dir, "nope.toml")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: cannot read: No such file or directory")

    def test_directory(self) -> None:
        e = self.assertRaises(ConfigError, load_config, self.dir)
        self.assertEqual(str(e), f"{self.dir}: cannot read: Is a directory")

    def test_not_toml(self) -> None:
        e = self.assertProblem('[acme]\nlisten = "tcp:1"\nbase_url = https://x\n', None, "not valid TOML")
        self.assertIn("line 3, column", str(e))

    def test_not_utf8(self) -> None:
        path = os.path.join(self.dir, "appliance.toml")
        with open(path, "wb") as f:
            f.write(b'[acme]\nlisten = "\xff"\n')
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}: not UTF-8 text (byte 17): TOML files must be UTF-8")

    def test_message_format(self) -> None:
        """
        C{str()} is exactly C{"<file>: <key>: <problem>"}.
        """
        e = self.error(setting("acme", "listen", 8443))
        path = os.path.join(self.dir, "appliance.toml")
        self.assertEqual(str(e), f"{path}: acme.listen: expected a string, got an integer")
        self.assertEqual((e.file, e.key, e.problem), (path, "acme.listen", "expected a string, got an integer"))

    def test_relative_file_name_kept_in_message(self) -> None:
        """
        The error names the file as the operator gave it.
        """
        self.write(to_toml(self.data(setting("acme", "listen", 1))))
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)
        e = self.assertRaises(ConfigError, load_config, "appliance.toml")
        self.assertEqual(str(e), "appliance.toml: acme.listen: expected a string, got an integer")

    def test_valid(self) -> None:
        config = self.load()
        self.assertEqual(config.path, os.path.join(self.dir, "appliance.toml"))
        self.assertEqual(config.acme.listen, "tcp:8443:interface=127.0.0.1")
        self.assertIsNone(config.admin)
        self.assertEqual(config.issuance, config_module.IssuanceConfig())
        self.assertEqual(config.notify, config_module.NotifyConfig())

    def test_relative_config_path_stored_absolute(self) -> None:
        self.write(to_toml(self.data()))
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)
        config = load_config("appliance.toml")
        self.assertEqual(config.path, os.path.join(self.dir, "appliance.toml"))
        self.assertEqual(config.storage.state_dir, os.path.join(self.dir, "var"))


class TopLevelTests(ConfigTestCase):
    def test_unknown_section(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["acmee"] = {"listen": "tcp:1"}

        self.assertProblem(change, "acmee", "unknown key; did you mean 'acme'?")

    def test_unknown_top_level_key(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["zzz"] = 1

        self.assertProblem(change, "zzz", "unknown key (known: acme, admin, storage")

    def test_missing_acme(self) -> None:
        self.assertProblem(removing("acme"), "acme", "missing required section [acme]")

    def test_missing_storage(self) -> None:
        self.assertProblem(removing("storage"), "storage", "missing required section [storage]")

    def test_section_not_a_table(self) -> None:
        text = to_toml(self.data(removing("acme"))).replace("[storage]", 'acme = "x"\n[storage]', 1)
        text = 'acme = "x"\n' + text.replace('acme = "x"\n', "")
        self.assertProblem(text, "acme", "expected a table [acme], got a string")

    def test_no_ca(self) -> None:
        self.assertProblem(removing("ca"), "ca", "at least one [[ca]] table is required")

    def test_ca_not_array_of_tables(self) -> None:
        text = "[ca]\nname = 'x'\n" + to_toml(self.data(removing("ca")))
        self.assertProblem(text, "ca", "expected an array of tables [[ca]], got a table")

    def test_no_policy(self) -> None:
        self.assertProblem(removing("policy"), "policy", "at least one [[policy]] table is required")

    def test_empty_policy_array(self) -> None:
        text = "policy = []\n" + to_toml(self.data(removing("policy")))
        self.assertProblem(text, "policy", "at least one [[policy]] table is required")


class AcmeSectionTests(ConfigTestCase):
    def test_unknown_key(self) -> None:
        self.assertProblem(setting("acme", "lisen", "tcp:1"), "acme.lisen", "unknown key; did you mean 'listen'?")

    def test_listen_required(self) -> None:
        self.assertProblem(removing("acme", "listen"), "acme.listen", "missing (required)")

    def test_base_url_required(self) -> None:
        self.assertProblem(removing("acme", "base_url"), "acme.base_url", "missing (required)")

    def test_listen_type(self) -> None:
        self.assertProblem(setting("acme", "listen", ["tcp:1"]), "acme.listen", "expected a string, got an array")

    def test_listen_empty(self) -> None:
        self.assertProblem(setting("acme", "listen", " "), "acme.listen", "must not be empty")

    def test_unknown_endpoint_type(self) -> None:
        self.assertProblem(setting("acme", "listen", "tpc:8443"), "acme.listen", "'tpc:8443': unknown endpoint type")

    def test_port_out_of_range(self) -> None:
        self.assertProblem(
            setting("acme", "listen", "tcp:70000"), "acme.listen", "port '70000' is not a number from 0 to 65535"
        )

    def test_port_not_number(self) -> None:
        self.assertProblem(setting("acme", "listen", "tcp:https"), "acme.listen", "port 'https' is not a number")

    def test_port_missing(self) -> None:
        self.assertProblem(setting("acme", "listen", "tcp:interface=127.0.0.1"), "acme.listen", "port '' is not")

    def test_unknown_endpoint_option(self) -> None:
        self.assertProblem(
            setting("acme", "listen", "tcp:8443:interfce=127.0.0.1"),
            "acme.listen",
            "unknown option 'interfce' for a tcp endpoint; did you mean 'interface'?",
        )

    def test_option_twice(self) -> None:
        self.assertProblem(setting("acme", "listen", "tcp:8443:port=1"), "acme.listen", "port is given twice")

    def test_too_many_values(self) -> None:
        self.assertProblem(setting("acme", "listen", "tcp:1:a:2:3"), "acme.listen", "too many ':'-separated values")

    def test_bad_backlog(self) -> None:
        self.assertProblem(
            setting("acme", "listen", "tcp:1:backlog=lots"), "acme.listen", "backlog 'lots' is not a positive number"
        )

    def test_trailing_backslash(self) -> None:
        self.assertProblem(setting("acme", "listen", "tcp:1\\"), "acme.listen", "not a valid endpoint description")

    def test_tcp6(self) -> None:
        config = self.load(setting("acme", "listen", "tcp6:8443:interface=\\:\\:1"))
        self.assertEqual(config.acme.listen, "tcp6:8443:interface=\\:\\:1")
        self.assertIsNone(config.acme.tls_cert)

    def test_unix_relative(self) -> None:
        config = self.load(setting("acme", "listen", "unix:run/acme.sock:mode=660"))
        self.assertEqual(config.acme.listen, f"unix:{self.dir}/run/acme.sock:mode=660")

    def test_unix_bad_mode(self) -> None:
        self.assertProblem(setting("acme", "listen", "unix:a.sock:mode=rw"), "acme.listen", "mode 'rw' is not an octal")
        self.assertProblem(
            setting("acme", "listen", "unix:a.sock:lockfile=2"), "acme.listen", "lockfile must be 0 or 1"
        )

    def test_ssl_needs_private_key(self) -> None:
        self.assertProblem(
            setting("acme", "listen", "ssl:8443"), "acme.listen", "an ssl endpoint needs privateKey=FILE"
        )

    def test_ssl_files_must_exist(self) -> None:
        self.assertProblem(
            setting("acme", "listen", "ssl:8443:privateKey=tls.key:certKey=tls.pem"),
            "acme.listen",
            f"privateKey '{self.dir}/tls.key' does not exist or is not a file",
        )

    def test_ssl_cert_must_exist(self) -> None:
        make_tls(self.dir)
        self.assertProblem(
            setting("acme", "listen", "ssl:8443:privateKey=tls.key:certKey=other.pem"),
            "acme.listen",
            f"certKey '{self.dir}/other.pem' does not exist",
        )

    def test_ssl_files_must_be_pem(self) -> None:
        for name in ("tls.key", "tls.pem"):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write("not pem\n")
        self.assertProblem(
            setting("acme", "listen", "ssl:8443:privateKey=tls.key:certKey=tls.pem"), "acme.listen", "cannot set up TLS"
        )

    def test_ssl_with_files(self) -> None:
        key, cert = make_tls(self.dir)
        config = self.load(setting("acme", "listen", "ssl:8443:privateKey=tls.key:certKey=tls.pem"))
        self.assertEqual((config.acme.tls_key, config.acme.tls_cert), (key, cert))
        self.assertEqual(config.acme.listen, f"ssl:8443:privateKey={key}:certKey={cert}")

    def test_ssl_cert_defaults_to_private_key(self) -> None:
        key, cert = make_tls(self.dir)
        with open(os.path.join(self.dir, "both.pem"), "wb") as f:
            for path in (cert, key):
                with open(path, "rb") as g:
                    f.write(g.read())
        config = self.load(setting("acme", "listen", "ssl:8443:privateKey=both.pem"))
        self.assertEqual(config.acme.tls_cert, os.path.join(self.dir, "both.pem"))
        self.assertEqual(config.acme.tls_key, os.path.join(self.dir, "both.pem"))

    def test_ssl_extra_chain_must_exist(self) -> None:
        make_tls(self.dir)
        self.assertProblem(
            setting("acme", "listen", "ssl:8443:privateKey=tls.key:certKey=tls.pem:extraCertChain=chain.pem"),
            "acme.listen",
            f"extraCertChain '{self.dir}/chain.pem' does not exist",
        )

    def test_self_signed_allows_missing_files(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["acme"]["listen"] = "ssl:8443:privateKey=var/tls.key:certKey=var/tls.pem"
            data["acme"]["self_signed_tls"] = True

        config = self.load(change)
        self.assertTrue(config.acme.self_signed_tls)
        self.assertEqual(config.acme.tls_key, os.path.join(self.dir, "var", "tls.key"))
        self.assertEqual(config.acme.tls_cert, os.path.join(self.dir, "var", "tls.pem"))
        self.assertEqual(
            config.acme.listen, f"ssl:8443:privateKey={self.dir}/var/tls.key:certKey={self.dir}/var/tls.pem"
        )

    def test_self_signed_needs_ssl(self) -> None:
        self.assertProblem(
            setting("acme", "self_signed_tls", True), "acme.self_signed_tls", "only applies to an ssl: listen"
        )

    def test_self_signed_type(self) -> None:
        self.assertProblem(
            setting("acme", "self_signed_tls", "yes"), "acme.self_signed_tls", "expected true or false, got a string"
        )

    def test_escaping(self) -> None:
        """
        A config directory whose path holds C{:}, C{=} and C{\\} gives an
        C{ssl:} description that Twisted parses back to the absolute paths.
        """
        sub = os.path.join(self.dir, "a:b=c\\d")
        os.makedirs(sub)
        make_tls(sub)
        path = os.path.join(sub, "appliance.toml")
        with open(path, "w") as f:
            f.write(to_toml(self.data(setting("acme", "listen", "ssl:8443:privateKey=tls.key:certKey=tls.pem"))))
        config = load_config(path)
        self.assertEqual(config.acme.tls_key, os.path.join(sub, "tls.key"))
        args, kwargs = parse_endpoint(config.acme.listen)
        self.assertEqual(args, ["ssl", "8443"])
        self.assertEqual(kwargs, {"privateKey": os.path.join(sub, "tls.key"), "certKey": os.path.join(sub, "tls.pem")})
        self.assertIn("a\\:b\\=c\\\\d", config.acme.listen)

    def test_escaped_relative_path(self) -> None:
        """
        An escaped C{:} in a relative path stays part of the file name.
        """

        def change(data: dict[str, Any]) -> None:
            data["acme"]["listen"] = "ssl:8443:privateKey=x\\:y.key"
            data["acme"]["self_signed_tls"] = True

        config = self.load(change)
        self.assertEqual(config.acme.tls_key, os.path.join(self.dir, "x:y.key"))
        self.assertEqual(parse_endpoint(config.acme.listen)[1]["privateKey"], os.path.join(self.dir, "x:y.key"))

    def test_base_url_scheme(self) -> None:
        self.assertProblem(
            setting("acme", "base_url", "ftp://acme.example.net"),
            "acme.base_url",
            "'ftp://acme.example.net' must start with https:// or http://",
        )

    def test_base_url_host(self) -> None:
        self.assertProblem(setting("acme", "base_url", "https://"), "acme.base_url", "'https://' has no host")

    def test_base_url_bad_port(self) -> None:
        self.assertProblem(setting("acme", "base_url", "https://a.example:99999"), "acme.base_url", "not a valid URL")

    def test_base_url_query(self) -> None:
        self.assertProblem(setting("acme", "base_url", "https://a.example/?x=1"), "acme.base_url", "query or fragment")

    def test_base_url_trailing_slash_stripped(self) -> None:
        config = self.load(setting("acme", "base_url", "https://acme.example.net/acme/"))
        self.assertEqual(config.acme.base_url, "https://acme.example.net/acme")

    def test_terms_of_service(self) -> None:
        self.assertProblem(
            setting("acme", "terms_of_service", "terms.html"), "acme.terms_of_service", "must start with https://"
        )
        config = self.load(setting("acme", "terms_of_service", "https://example.net/tos"))
        self.assertEqual(config.acme.terms_of_service, "https://example.net/tos")

    def test_max_body_bytes_bool(self) -> None:
        self.assertProblem(
            setting("acme", "max_body_bytes", True), "acme.max_body_bytes", "expected an integer, got a boolean"
        )

    def test_max_body_bytes_float(self) -> None:
        self.assertProblem(
            setting("acme", "max_body_bytes", 1.5), "acme.max_body_bytes", "expected an integer, got a float"
        )

    def test_max_body_bytes_range(self) -> None:
        self.assertProblem(setting("acme", "max_body_bytes", 10), "acme.max_body_bytes", "10 is out of range (1024 to")

    def test_finalize_wait(self) -> None:
        """
        C{[acme] finalize_wait}: seconds, 1.0 by default, 0 turns the wait
        off, at most 10.
        """
        self.assertEqual(self.load().acme.finalize_wait, 1.0)
        self.assertEqual(self.load(setting("acme", "finalize_wait", 0)).acme.finalize_wait, 0.0)
        self.assertEqual(self.load(setting("acme", "finalize_wait", 2.5)).acme.finalize_wait, 2.5)
        self.assertEqual(self.load(setting("acme", "finalize_wait", 10)).acme.finalize_wait, 10.0)

    def test_finalize_wait_bad(self) -> None:
        key = "acme.finalize_wait"
        self.assertProblem(setting("acme", "finalize_wait", -0.5), key, "must not be negative, got -0.5")
        self.assertProblem(setting("acme", "finalize_wait", 10.5), key, "10.5 is out of range (0 to 10)")
        self.assertProblem(setting("acme", "finalize_wait", "1s"), key, "expected a number, got a string")
        self.assertProblem(setting("acme", "finalize_wait", True), key, "expected a number, got a boolean")
        self.assertProblem(to_toml(self.data()).replace("[acme]\n", "[acme]\nfinalize_wait = nan\n"), key, "finite")


class AdminSectionTests(ConfigTestCase):
    def test_both_keys_required(self) -> None:
        self.assertProblem(setting("admin", "listen", "tcp:8081"), "admin.api_key_file", "missing (required)")
        self.assertProblem(setting("admin", "api_key_file", "admin.key"), "admin.listen", "missing (required)")

    def test_empty_section_is_present(self) -> None:
        text = "[admin]\n" + to_toml(self.data())
        self.assertProblem(text, "admin.listen", "missing (required)")

    def test_paths(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["admin"] = {"listen": "tcp:8081:interface=127.0.0.1", "api_key_file": "keys/admin.key"}

        config = self.load(change)
        assert config.admin is not None
        self.assertEqual(config.admin.api_key_file, os.path.join(self.dir, "keys", "admin.key"))
        self.assertEqual(config.admin.listen, "tcp:8081:interface=127.0.0.1")

    def test_listen(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["admin"] = {"listen": "http:8081", "api_key_file": "admin.key"}

        self.assertProblem(change, "admin.listen", "unknown endpoint type")

    def test_unknown_key(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["admin"] = {"listen": "tcp:1", "api_key_file": "k", "api_key": "secret"}

        self.assertProblem(change, "admin.api_key", "unknown key; did you mean 'api_key_file'?")


class StorageSectionTests(ConfigTestCase):
    def test_sqlite_relative(self) -> None:
        config = self.load(setting("storage", "url", "sqlite:db/state.db"))
        self.assertEqual(config.storage.url, f"sqlite:{self.dir}/db/state.db")
        self.assertEqual(config.storage.state_dir, os.path.join(self.dir, "var"))

    def test_sqlite_url_form(self) -> None:
        config = self.load(setting("storage", "url", "sqlite:///srv/state.db"))
        self.assertEqual(config.storage.url, "sqlite:/srv/state.db")

    def test_memory_and_redis_kept(self) -> None:
        for url in ("memory:", "redis://localhost:6379/1", "rediss://:pw@cache/2", "redis+sentinel://s1,s2/m"):
            config = self.load(setting("storage", "url", url))
            self.assertEqual(config.storage.url, url)
            self.assertEqual((config.storage.ca_bundle, config.storage.wait_replicas), (None, 0))

    def redis(self, url: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def change(data: dict[str, Any]) -> None:
            data["storage"]["url"] = url
            data["storage"][key] = value

        return change

    def test_redis_ca_bundle(self) -> None:
        make_tls(self.dir, cert_name="redis-ca.pem")
        config = self.load(self.redis("rediss://cache", "ca_bundle", "redis-ca.pem"))
        self.assertEqual(config.storage.ca_bundle, os.path.join(self.dir, "redis-ca.pem"))

    def test_redis_ca_bundle_problems(self) -> None:
        self.assertProblem(
            self.redis("rediss://cache", "ca_bundle", "none.pem"),
            "storage.ca_bundle",
            "does not exist or is not a file",
        )
        make_tls(self.dir, cert_name="redis-ca.pem")
        self.assertProblem(
            self.redis("redis://cache", "ca_bundle", "redis-ca.pem"),
            "storage.ca_bundle",
            "only applies to a rediss:// url",
        )

    def test_wait_replicas(self) -> None:
        self.assertEqual(self.load(self.redis("redis://cache", "wait_replicas", 2)).storage.wait_replicas, 2)
        self.assertProblem(self.redis("redis://cache", "wait_replicas", -1), "storage.wait_replicas", "out of range")
        self.assertProblem(self.redis("redis://cache", "wait_replicas", "1"), "storage.wait_replicas", "integer")
        self.assertProblem(
            self.redis("sqlite:state.db", "wait_replicas", 1), "storage.wait_replicas", "only applies to a redis url"
        )

    def test_fsync(self) -> None:
        self.assertIs(self.load(setting("storage", "url", "sqlite:state.db")).storage.fsync, Fsync.EVERYSEC)
        self.assertIs(self.load(self.redis("sqlite:state.db", "fsync", "always")).storage.fsync, Fsync.ALWAYS)
        self.assertProblem(
            self.redis("sqlite:state.db", "fsync", "never"),
            "storage.fsync",
            "'never' is not one of 'always', 'everysec'",
        )
        for url in ("memory:", "redis://cache"):
            self.assertProblem(self.redis(url, "fsync", "always"), "storage.fsync", "only applies to a sqlite: url")

    def test_bad_scheme(self) -> None:
        self.assertProblem(
            setting("storage", "url", "postgres://db"), "storage.url", "unsupported storage URL scheme 'postgres'"
        )

    def test_sqlite_without_path(self) -> None:
        self.assertProblem(setting("storage", "url", "sqlite:"), "storage.url", "sqlite needs a file path")

    def test_url_required(self) -> None:
        self.assertProblem(removing("storage", "url"), "storage.url", "missing (required)")

    def test_state_dir_required(self) -> None:
        self.assertProblem(removing("storage", "state_dir"), "storage.state_dir", "missing (required)")

    def test_state_path(self) -> None:
        config = self.load()
        self.assertEqual(state_path(config, "ca", "builtin"), os.path.join(self.dir, "var", "ca", "builtin"))


class ValidationSectionTests(ConfigTestCase):
    def test_defaults(self) -> None:
        def change(data: dict[str, Any]) -> None:
            del data["validation"]

        self.assertEqual(self.load(change).validation, config_module.ValidationConfig())

    def test_dns_zone_normalised(self) -> None:
        config = self.load(setting("validation", "dns_zone", "DCV.Example.NET."))
        self.assertEqual(config.validation.dns_zone, "dcv.example.net")

    def test_dns_zone_invalid(self) -> None:
        self.assertProblem(
            setting("validation", "dns_zone", "dcv_zone.example"),
            "validation.dns_zone",
            "'dcv_zone' is not a valid DNS label",
        )

    def test_dns_zone_wildcard(self) -> None:
        self.assertProblem(
            setting("validation", "dns_zone", "*.example.net"), "validation.dns_zone", "'*' is allowed nowhere"
        )

    def test_dns_listen_port(self) -> None:
        self.assertProblem(
            setting("validation", "dns_listen_port", 65536),
            "validation.dns_listen_port",
            "65536 is out of range (0 to 65535)",
        )
        self.assertProblem(
            setting("validation", "dns_listen_port", "53"), "validation.dns_listen_port", "expected an integer"
        )

    def test_dns_listen_interface(self) -> None:
        self.assertProblem(
            setting("validation", "dns_listen_interface", "eth0"),
            "validation.dns_listen_interface",
            "'eth0' is not an IP address",
        )
        config = self.load(setting("validation", "dns_listen_interface", "::"))
        self.assertEqual(config.validation.dns_listen_interface, "::")

    def test_dns_view_refresh(self) -> None:
        self.assertEqual(self.load(setting("validation", "dns_view_refresh", 0.5)).validation.dns_view_refresh, 0.5)
        for value, words in [(0, "must be greater than 0"), (61, "at most 60"), ("1", "expected a number")]:
            self.assertProblem(setting("validation", "dns_view_refresh", value), "validation.dns_view_refresh", words)

    def test_dns_nameservers(self) -> None:
        self.assertProblem(
            setting("validation", "dns_nameservers", "ns1.example.net"),
            "validation.dns_nameservers",
            "expected an array of strings, got a string",
        )
        self.assertProblem(
            setting("validation", "dns_nameservers", ["ns1.example.net", 2]),
            "validation.dns_nameservers",
            "entry 2: expected a string, got an integer",
        )
        self.assertProblem(
            setting("validation", "dns_nameservers", ["ns1"]),
            "validation.dns_nameservers",
            "'ns1' is not a fully qualified name",
        )
        config = self.load(setting("validation", "dns_nameservers", ["NS1.Example.net."]))
        self.assertEqual(config.validation.dns_nameservers, ("ns1.example.net",))

    def test_value_ttl(self) -> None:
        for bad in (0, 86401):
            self.assertProblem(
                setting("validation", "value_ttl", bad), "validation.value_ttl", f"{bad} is out of range (1 to 86400)"
            )

    def test_fileproxy_listen(self) -> None:
        self.assertProblem(
            setting("validation", "fileproxy_listen", "tcp:80:interface"),
            "validation.fileproxy_listen",
            "'tcp:80:interface': interface 'interface' is not an IP address",
        )
        self.assertProblem(
            setting("validation", "fileproxy_listen", "unix:a.sock:mode=9"),
            "validation.fileproxy_listen",
            "'unix:a.sock:mode=9': mode '9' is not an octal permission such as 660",
        )

    def test_fileproxy_ssl_files_required(self) -> None:
        """
        C{self_signed_tls} is about the ACME listener only.
        """

        def change(data: dict[str, Any]) -> None:
            data["acme"]["listen"] = "ssl:8443:privateKey=tls.key"
            data["acme"]["self_signed_tls"] = True
            data["validation"]["fileproxy_listen"] = "ssl:443:privateKey=proxy.key"

        self.assertProblem(change, "validation.fileproxy_listen", "privateKey")

    def test_preflight(self) -> None:
        self.assertProblem(setting("validation", "preflight", 1), "validation.preflight", "expected true or false")
        self.assertFalse(self.load(setting("validation", "preflight", False)).validation.preflight)


class NotifySectionTests(ConfigTestCase):
    def test_syslog_forms(self) -> None:
        for value in ("udp:127.0.0.1:514", "tcp:logs.example.net:601", "udp:[::1]:514", "unix:/dev/log"):
            self.assertEqual(self.load(setting("notify", "syslog", value)).notify.syslog, value)

    def test_syslog_unix_relative(self) -> None:
        config = self.load(setting("notify", "syslog", "unix:log.sock"))
        self.assertEqual(config.notify.syslog, f"unix:{self.dir}/log.sock")

    def test_syslog_bad(self) -> None:
        for value in ("127.0.0.1:514", "udp:127.0.0.1", "smtp:a:25", "unix:", "udp::514"):
            self.assertProblem(
                setting("notify", "syslog", value), "notify.syslog", "use udp:HOST:PORT, tcp:HOST:PORT or unix:/path"
            )

    def test_syslog_port(self) -> None:
        self.assertProblem(
            setting("notify", "syslog", "udp:localhost:0"), "notify.syslog", "port '0' is not a number from 1 to 65535"
        )

    def test_webhooks(self) -> None:
        self.assertProblem(
            setting("notify", "webhooks", ["https://ok.example/hook", "hooks.example/x"]),
            "notify.webhooks",
            "'hooks.example/x' must start with https:// or http://",
        )
        self.assertProblem(
            setting("notify", "webhooks", "https://ok.example/hook"), "notify.webhooks", "expected an array of strings"
        )
        config = self.load(setting("notify", "webhooks", ["https://ok.example/hook", "http://127.0.0.1:9/x"]))
        self.assertEqual(config.notify.webhooks, ("https://ok.example/hook", "http://127.0.0.1:9/x"))

    def test_webhook_secret(self) -> None:
        self.assertProblem(setting("notify", "webhook_secret", ""), "notify.webhook_secret", "must not be empty")

    def test_webhook_tables(self) -> None:
        """
        C{[[notify.webhook]]} tables give each webhook its own secret; the
        C{webhooks} URLs share C{webhook_secret}.
        """

        def change(data: dict[str, Any]) -> None:
            data.setdefault("notify", {}).update(
                {
                    "webhooks": ["https://a.example/hook"],
                    "webhook_secret": "shared",
                    "webhook": [{"url": "https://b.example/hook", "secret": "own"}, {"url": "http://c.example/"}],
                }
            )

        config = self.load(change)
        self.assertEqual(
            [(h.url, h.secret) for h in config.notify.all_webhooks()],
            [("https://a.example/hook", "shared"), ("https://b.example/hook", "own"), ("http://c.example/", None)],
        )
        self.assertProblem(
            setting("notify", "webhook", [{"secret": "x"}]), "notify.webhook[1].url", "missing (required)"
        )
        self.assertProblem(
            setting("notify", "webhook", [{"url": "ftp://x"}]),
            "notify.webhook[1].url",
            "must start with https:// or http://",
        )
        self.assertProblem(
            setting("notify", "webhook", [{"url": "https://x/", "sekret": "x"}]), "notify.webhook[1].sekret", "unknown"
        )
        self.assertProblem(setting("notify", "webhook", ["https://x/"]), "notify.webhook", "expected a table")


class IssuanceSectionTests(ConfigTestCase):
    def test_positive(self) -> None:
        for key in ("order_deadline", "reuse_window", "order_lifetime"):
            self.assertProblem(setting("issuance", key, 0), f"issuance.{key}", "must be greater than 0, got 0")
            self.assertProblem(setting("issuance", key, -1.5), f"issuance.{key}", "must be greater than 0, got -1.5")
        self.assertProblem(setting("issuance", "retry_after", 0), "issuance.retry_after", "must be at least 1, got 0")

    def test_types(self) -> None:
        self.assertProblem(
            setting("issuance", "order_deadline", "10m"), "issuance.order_deadline", "expected a number, got a string"
        )
        self.assertProblem(
            setting("issuance", "retry_after", 2.5), "issuance.retry_after", "expected an integer, got a float"
        )

    def test_not_finite(self) -> None:
        text = to_toml(self.data()) + "[issuance]\nreuse_window = inf\n"
        self.assertProblem(text, "issuance.reuse_window", "must be a finite number")

    def test_values(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["issuance"] = {"order_deadline": 30, "reuse_window": 0.5, "retry_after": 5, "order_lifetime": 3600}

        issuance = self.load(change).issuance
        self.assertEqual(issuance, config_module.IssuanceConfig(30.0, 0.5, 5, 3600.0))
        self.assertIsInstance(issuance.order_deadline, float)


class CATests(ConfigTestCase):
    def test_parsed(self) -> None:
        config = self.load()
        self.assertEqual(config.ca("builtin"), config_module.CAConfig(name="builtin", kind=CAKind.LOCAL))
        self.assertEqual(config.ca("le").directory, "https://acme.example.org/directory")
        self.assertRaises(KeyError, config.ca, "nope")

    def test_name_required(self) -> None:
        def change(data: dict[str, Any]) -> None:
            del data["ca"][1]["name"]

        self.assertProblem(change, "ca[2].name", "missing (required)")

    def test_name_syntax(self) -> None:
        self.assertProblem(ca_setting(1, "name", "Let's Encrypt"), "ca[2].name", '"Let\'s Encrypt" is not a valid name')

    def test_unknown_key_uses_name(self) -> None:
        self.assertProblem(
            ca_setting(1, "directroy", "x"), 'ca "le".directroy', "unknown key; did you mean 'directory'?"
        )

    def test_duplicate(self) -> None:
        self.assertProblem(ca_setting(1, "name", "builtin"), 'ca "builtin".name', "duplicate CA name 'builtin'")

    def test_kind(self) -> None:
        self.assertProblem(ca_setting(1, "kind", "ACME"), 'ca "le".kind', "'ACME' is not one of 'acme', 'local'")

        def change(data: dict[str, Any]) -> None:
            del data["ca"][1]["kind"]

        self.assertProblem(change, 'ca "le".kind', "missing (required)")

    def test_acme_needs_directory(self) -> None:
        def change(data: dict[str, Any]) -> None:
            del data["ca"][1]["directory"]

        self.assertProblem(change, 'ca "le".directory', "missing (required)")

    def test_directory_http_only_loopback(self) -> None:
        self.assertProblem(
            ca_setting(1, "directory", "http://acme.example.org/dir"),
            'ca "le".directory',
            "http:// is only allowed for localhost; use https://",
        )
        for host in ("127.0.0.1", "localhost", "[::1]"):
            url = f"http://{host}:14000/dir"
            self.assertEqual(self.load(ca_setting(1, "directory", url)).ca("le").directory, url)

    def test_directory_not_url(self) -> None:
        self.assertProblem(
            ca_setting(1, "directory", "acme.example.org"), 'ca "le".directory', "must start with https:// or http://"
        )

    def test_ca_bundle_missing(self) -> None:
        self.assertProblem(
            ca_setting(1, "ca_bundle", "roots.pem"),
            'ca "le".ca_bundle',
            f"file '{self.dir}/roots.pem' does not exist or is not a file",
        )

    def test_ca_bundle_not_pem(self) -> None:
        with open(os.path.join(self.dir, "roots.pem"), "w") as f:
            f.write("hello\n")
        self.assertProblem(ca_setting(1, "ca_bundle", "roots.pem"), 'ca "le".ca_bundle', "holds no PEM certificate")

    def test_ca_bundle(self) -> None:
        make_tls(self.dir, cert_name="roots.pem")
        config = self.load(ca_setting(1, "ca_bundle", "roots.pem"))
        self.assertEqual(config.ca("le").ca_bundle, os.path.join(self.dir, "roots.pem"))

    def test_contact(self) -> None:
        self.assertProblem(
            ca_setting(1, "contact", ["ops@example.net"]), 'ca "le".contact', "'ops@example.net' is not a mailto: URL"
        )
        config = self.load(ca_setting(1, "contact", ["mailto:ops@example.net"]))
        self.assertEqual(config.ca("le").contact, ("mailto:ops@example.net",))

    def test_eab_both_or_neither(self) -> None:
        self.assertProblem(
            ca_setting(1, "eab_kid", "kid-1"), 'ca "le".eab_hmac_key', "eab_kid and eab_hmac_key go together"
        )
        self.assertProblem(
            ca_setting(1, "eab_hmac_key", HMAC_KEY), 'ca "le".eab_kid', "eab_kid and eab_hmac_key go together"
        )

    def test_eab_hmac_not_base64url(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["ca"][1]["eab_kid"] = "kid-1"
            data["ca"][1]["eab_hmac_key"] = "s3cr3t+/key=="

        e = self.assertProblem(change, 'ca "le".eab_hmac_key', "is not base64url")
        self.assertNotIn("s3cr3t", str(e))

    def test_eab_hmac_bad_length(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["ca"][1]["eab_kid"] = "kid-1"
            data["ca"][1]["eab_hmac_key"] = "abcde"

        self.assertProblem(change, 'ca "le".eab_hmac_key', "is not base64url")

    def test_eab_hmac_too_short(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["ca"][1]["eab_kid"] = "kid-1"
            data["ca"][1]["eab_hmac_key"] = "c2hvcnQ"

        self.assertProblem(change, 'ca "le".eab_hmac_key', "decodes to only 5 bytes")

    def test_eab(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["ca"][1]["eab_kid"] = "kid-1"
            data["ca"][1]["eab_hmac_key"] = HMAC_KEY

        ca = self.load(change).ca("le")
        self.assertEqual((ca.eab_kid, ca.eab_hmac_key), ("kid-1", HMAC_KEY))

    def test_local_refuses_upstream_keys(self) -> None:
        for key, value in (
            ("directory", "https://x.example/d"),
            ("ca_bundle", "roots.pem"),
            ("eab_kid", "k"),
            ("eab_hmac_key", HMAC_KEY),
            ("contact", ["mailto:a@b.example"]),
        ):
            self.assertProblem(ca_setting(0, key, value), f'ca "builtin".{key}', 'only for kind = "acme"')

    def test_acme_refuses_local_keys(self) -> None:
        for key, value in (("validity_days", 30), ("issue_delay", 1.0)):
            self.assertProblem(ca_setting(1, key, value), f'ca "le".{key}', 'only for kind = "local"')

    def test_validity_days(self) -> None:
        for bad in (0, 826):
            self.assertProblem(
                ca_setting(0, "validity_days", bad), 'ca "builtin".validity_days', f"{bad} is out of range (1 to 825)"
            )
        self.assertEqual(self.load(ca_setting(0, "validity_days", 825)).ca("builtin").validity_days, 825)

    def test_issue_delay(self) -> None:
        self.assertProblem(ca_setting(0, "issue_delay", -1), 'ca "builtin".issue_delay', "must not be negative, got -1")
        self.assertEqual(self.load(ca_setting(0, "issue_delay", 2)).ca("builtin").issue_delay, 2.0)


class PolicyTests(ConfigTestCase):
    def test_parsed(self) -> None:
        config = self.load()
        policy = config.policy("shop")
        self.assertEqual(policy.primary_ca, "builtin")
        self.assertIsNone(policy.backup_ca)
        self.assertIs(policy.validation, ValidationMethod.NONE)
        self.assertEqual(policy.allowed_domains, ("example.com",))
        self.assertEqual(policy.key_types, frozenset({KeyType.RSA, KeyType.ECDSA}))
        self.assertEqual(policy.rsa_min_bits, 2048)
        self.assertRaises(KeyError, config.policy, "nope")

    def test_key_type_is_the_csr_one(self) -> None:
        # The policy's key types are the domain's, which the CSR checks use.
        self.assertEqual({type(k) for k in self.load().policies[0].key_types}, {KeyType})

    def test_duplicate(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["policy"].append(dict(data["policy"][0]))

        self.assertProblem(change, 'policy "shop".name', "duplicate policy name 'shop'")

    def test_name(self) -> None:
        self.assertProblem(policy_setting("name", "-shop"), "policy[1].name", "'-shop' is not a valid name")

    def test_unknown_key(self) -> None:
        self.assertProblem(
            policy_setting("allowed_domain", ["x.example"]),
            'policy "shop".allowed_domain',
            "unknown key; did you mean 'allowed_domains'?",
        )

    def test_unknown_primary(self) -> None:
        self.assertProblem(
            policy_setting("primary_ca", "zerossl"),
            'policy "shop".primary_ca',
            "unknown CA 'zerossl' (configured: builtin, le)",
        )

    def test_primary_required(self) -> None:
        def change(data: dict[str, Any]) -> None:
            del data["policy"][0]["primary_ca"]

        self.assertProblem(change, 'policy "shop".primary_ca', "missing (required)")

    def test_unknown_backup(self) -> None:
        self.assertProblem(
            policy_setting("backup_ca", "other"),
            'policy "shop".backup_ca',
            "unknown CA 'other' (configured: builtin, le)",
        )

    def test_backup_same_as_primary(self) -> None:
        self.assertProblem(
            policy_setting("backup_ca", "builtin"),
            'policy "shop".backup_ca',
            "is the same CA as primary_ca ('builtin')",
        )

    def test_validation_value(self) -> None:
        self.assertProblem(
            policy_setting("validation", "http-01"),
            'policy "shop".validation',
            "'http-01' is not one of 'dns-cname', 'file-proxy', 'none'",
        )

    def test_validation_none_needs_local_primary(self) -> None:
        self.assertProblem(
            policy_setting("primary_ca", "le"),
            'policy "shop".validation',
            '"none" is only for local CAs, and CA \'le\' is kind "acme"',
        )

    def test_validation_none_needs_local_backup(self) -> None:
        self.assertProblem(policy_setting("backup_ca", "le"), 'policy "shop".validation', "CA 'le' is kind \"acme\"")

    def test_dns_cname_needs_zone(self) -> None:
        def change(data: dict[str, Any]) -> None:
            del data["validation"]["dns_zone"]
            data["policy"][0]["validation"] = "dns-cname"

        self.assertProblem(change, 'policy "shop".validation', '"dns-cname" needs [validation] dns_zone')

    def test_file_proxy_needs_listener(self) -> None:
        def change(data: dict[str, Any]) -> None:
            del data["validation"]["fileproxy_listen"]
            data["policy"][0]["validation"] = "file-proxy"

        self.assertProblem(change, 'policy "shop".validation', '"file-proxy" needs [validation] fileproxy_listen')

    def test_upstream_policy(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["policy"][0].update(primary_ca="le", backup_ca="builtin", validation="dns-cname")

        policy = self.load(change).policy("shop")
        self.assertEqual((policy.primary_ca, policy.backup_ca), ("le", "builtin"))
        self.assertIs(policy.validation, ValidationMethod.DNS_CNAME)

    def test_allowed_domains_empty(self) -> None:
        self.assertProblem(policy_setting("allowed_domains", []), 'policy "shop".allowed_domains', "missing or empty")

        def change(data: dict[str, Any]) -> None:
            del data["policy"][0]["allowed_domains"]

        self.assertProblem(change, 'policy "shop".allowed_domains', "missing or empty")

    def test_allowed_domains_invalid(self) -> None:
        for bad, problem in (
            ("exa mple.com", "'exa mple' is not a valid DNS label"),
            ("*.*.example.com", "'*' is allowed only as the whole leftmost label"),
            ("www.*.example.com", "'*' is allowed only as the whole leftmost label"),
            ("w*.example.com", "'*' is allowed only as the whole leftmost label"),
            ("*", "'*' is allowed only"),
            ("bücher.example", "is not ASCII: give internationalised names as A-labels (xn--...)"),
            ("xn--zz.example", "'xn--zz' is not a valid A-label"),
            ("-a.example", "'-a' is not a valid DNS label"),
            ("a..example", "'' is not a valid DNS label"),
            ("localhost", "'localhost' is not a fully qualified name"),
            ("a" * 64 + ".example", "is not a valid DNS label"),
            (".", "empty DNS name"),
            ("a." * 127 + "example", "is longer than 253 characters"),
        ):
            self.assertProblem(policy_setting("allowed_domains", [bad]), 'policy "shop".allowed_domains', problem)

    def test_allowed_domains_normalised(self) -> None:
        domains = ["Example.COM.", "*.Example.com", "*.test", "xn--bcher-kva.example", "example.com"]
        config = self.load(policy_setting("allowed_domains", domains))
        self.assertEqual(
            config.policy("shop").allowed_domains, ("example.com", "*.example.com", "*.test", "xn--bcher-kva.example")
        )

    def test_key_types(self) -> None:
        self.assertProblem(
            policy_setting("key_types", ["rsa", "dsa"]), 'policy "shop".key_types', "'dsa' is not one of 'rsa', 'ecdsa'"
        )
        self.assertProblem(policy_setting("key_types", []), 'policy "shop".key_types', "must name at least one")
        self.assertProblem(
            policy_setting("key_types", "rsa"), 'policy "shop".key_types', "expected an array of strings"
        )
        config = self.load(policy_setting("key_types", ["ecdsa"]))
        self.assertEqual(config.policy("shop").key_types, frozenset({KeyType.ECDSA}))

    def test_rsa_min_bits(self) -> None:
        for bad in (1024, 16384):
            self.assertProblem(
                policy_setting("rsa_min_bits", bad),
                'policy "shop".rsa_min_bits',
                f"{bad} is out of range (2048 to 8192)",
            )
        self.assertEqual(self.load(policy_setting("rsa_min_bits", 3072)).policy("shop").rsa_min_bits, 3072)


class ShippedFilesTests(ConfigTestCase):
    def test_quick_start(self) -> None:
        """
        C{etc/acme-appliance.toml} loads as it is (its TLS files are made at
        start-up) and resolves its paths next to itself.
        """
        path = os.path.join(self.dir, "acme-appliance.toml")
        shutil.copy(os.path.join(ETC, "acme-appliance.toml"), path)
        config = load_config(path)
        var = os.path.join(self.dir, "var")
        self.assertEqual(config.acme.base_url, "https://127.0.0.1:18443")
        self.assertTrue(config.acme.self_signed_tls)
        self.assertEqual(config.acme.finalize_wait, 1.0)
        self.assertEqual((config.acme.tls_key, config.acme.tls_cert), (f"{var}/tls.key", f"{var}/tls.pem"))
        self.assertEqual(
            config.acme.listen, f"ssl:18443:interface=127.0.0.1:privateKey={var}/tls.key:certKey={var}/tls.pem"
        )
        assert config.admin is not None
        self.assertEqual(config.admin.listen, "tcp:18081:interface=127.0.0.1")
        self.assertEqual(config.admin.api_key_file, f"{var}/admin.key")
        self.assertEqual(config.storage, config_module.StorageConfig(url=f"sqlite:{var}/state.db", state_dir=var))
        self.assertEqual(config.validation.fileproxy_listen, "tcp:18080:interface=127.0.0.1")
        self.assertEqual(config.validation.dns_zone, "dcv.example.test")
        self.assertEqual(config.validation.dns_listen_port, 15353)
        self.assertEqual(config.validation.dns_listen_interface, "127.0.0.1")
        self.assertEqual(config.validation.dns_nameservers, ("ns1.dcv.example.test",))
        self.assertEqual([(ca.name, ca.kind) for ca in config.cas], [("builtin", CAKind.LOCAL)])
        policy = config.policy("default")
        self.assertEqual(policy.primary_ca, "builtin")
        self.assertIs(policy.validation, ValidationMethod.NONE)
        self.assertEqual(policy.allowed_domains, ("*.example.test", "example.test", "*.test"))

    def test_quick_start_in_place(self) -> None:
        config = load_config(os.path.join(ETC, "acme-appliance.toml"))
        self.assertEqual(config.storage.state_dir, os.path.join(ETC, "var"))

    def test_production_example(self) -> None:
        """
        C{etc/production.example.toml} loads once its TLS files exist.
        """
        path = os.path.join(self.dir, "production.toml")
        shutil.copy(os.path.join(ETC, "production.example.toml"), path)
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(e.key, "acme.listen")
        os.makedirs(os.path.join(self.dir, "tls"))
        make_tls(os.path.join(self.dir, "tls"), "acme.key", "acme.pem")
        config = load_config(path)
        self.assertEqual(config.acme.tls_key, os.path.join(self.dir, "tls", "acme.key"))
        self.assertEqual([(ca.name, ca.kind) for ca in config.cas], [("le", CAKind.ACME), ("backup", CAKind.ACME)])
        self.assertIsNotNone(config.ca("backup").eab_kid)
        self.assertEqual(
            {p.name: p.validation for p in config.policies},
            {"shop": ValidationMethod.DNS_CNAME, "web": ValidationMethod.FILE_PROXY},
        )
        self.assertEqual(config.policy("shop").backup_ca, "backup")
        self.assertEqual(config.notify.syslog, "unix:/dev/log")
        self.assertEqual(len(config.notify.webhooks), 2)
        self.assertEqual(config.validation.dns_listen_port, 53)


class PropertyTests(ConfigTestCase):
    @settings(max_examples=40, deadline=None)
    @given(
        st.text(alphabet=st.sampled_from("ab:=\\ _-.%,"), min_size=1, max_size=12).filter(
            lambda s: s not in (".", "..")
        )
    )
    def test_ssl_paths_round_trip(self, dirname: str) -> None:
        """
        Whatever the config directory is called, Twisted parses the
        rewritten C{ssl:} description back to the absolute paths.
        """
        sub = os.path.join(self.mktemp(), dirname)
        os.makedirs(sub)
        path = os.path.join(sub, "c.toml")

        def change(data: dict[str, Any]) -> None:
            data["acme"]["listen"] = "ssl:8443:privateKey=k.key:certKey=c.pem"
            data["acme"]["self_signed_tls"] = True

        with open(path, "w") as f:
            f.write(to_toml(self.data(change)))
        config = load_config(path)
        key = os.path.join(os.path.abspath(sub), "k.key")
        cert = os.path.join(os.path.abspath(sub), "c.pem")
        self.assertEqual((config.acme.tls_key, config.acme.tls_cert), (key, cert))
        self.assertEqual(parse_endpoint(config.acme.listen), (["ssl", "8443"], {"privateKey": key, "certKey": cert}))

    @settings(max_examples=100, deadline=None)
    @given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30))
    def test_domain_never_crashes(self, name: str) -> None:
        """
        Any string in allowed_domains either loads normalised or gives one
        line naming the key.
        """
        path = self.write(to_toml(self.data(policy_setting("allowed_domains", [name]))))
        try:
            config = load_config(path)
        except ConfigError as e:
            self.assertEqual(e.key, 'policy "shop".allowed_domains', str(e))
            self.assertNotIn("\n", str(e))
        else:
            (normalised,) = config.policy("shop").allowed_domains
            self.assertEqual(normalised, normalised.lower())
            self.assertFalse(normalised.endswith("."))


class ResolverTests(SynchronousTestCase):
    """
    C{[validation] resolver}: where preflight checks look names up.
    """

    def load(self, value: str) -> Any:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "c.toml")
        with open(
            os.path.join(
                os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                "etc",
                "acme-appliance.toml",
            )
        ) as f:
            text = f.read().replace("preflight = true", f"preflight = true\nresolver = {value}")
        with open(path, "w") as f:
            f.write(text)
        return load_config(path).validation.resolver

    def test_forms(self) -> None:
        self.assertEqual(self.load('"127.0.0.1:5353"'), ("127.0.0.1", 5353))
        self.assertEqual(self.load('"10.0.0.1"'), ("10.0.0.1", 53))
        self.assertEqual(self.load('"::1"'), ("::1", 53))
        self.assertEqual(self.load('"[::1]:5353"'), ("::1", 5353))

    def test_errors(self) -> None:
        for value, problem in (('"dns.google"', "give an IP address"), ('"1.2.3.4:0"', "port must be")):
            with self.assertRaises(ConfigError) as raised:
                self.load(value)
            self.assertIn("validation.resolver", str(raised.exception))
            self.assertIn(problem, str(raised.exception))
