"""
The real world around the appliance, on loopback, for integration tests:

  - Pebble (the upstream CA), HTTPS with a throwaway CA made here, its DNS
    lookups going to
  - unbound, a recursive resolver holding the customer zone
    (C{_acme-challenge} CNAMEs into the dcv zone) with a stub-zone sending
    the dcv zone to the appliance's DNS port, and its HTTP-01 fetches going to
  - nginx, the customer's web server, proxying C{/.well-known/} to the
    appliance's file proxy with the Host header kept.

Every process is started by the test and stopped by its cleanups.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from .tools import AddressInUse, closed_port, free_port, require, start_retrying, wait_for, wait_listening

CUSTOMER_ZONE = "shop.test"
DCV_ZONE = "dcv.test"
# Names with a delegation (dns-cname) or a proxy rule (file-proxy) in place;
# "bare" has neither.
# Names the fleet and failover tests order (set up like www).
FLEET_NAMES = (
    "fleet.shop.test",
    "same.shop.test",
    "failover.shop.test",
    "during.shop.test",
    "down.shop.test",
    "back.shop.test",
)
# A name whose CNAME the appliance's resolver sees, while the CA's resolver
# (PebbleWorld(stale=...)) still has an old TXT value there.
STALE_NAME = "stale.shop.test"
DELEGATED = ("shop.test", "www.shop.test", "api.shop.test", STALE_NAME) + FLEET_NAMES
CUSTOMER_NAMES = DELEGATED + ("bare.shop.test",)


def _write(path: str, data: str | bytes, mode: int = 0o644) -> str:
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def make_tls_ca(directory: str, hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[str, str, str]:
    """
    A throwaway CA and a server certificate from it.

    @return: paths of the CA certificate, the server certificate and its key.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        _write(os.path.join(directory, "tls-ca.pem"), ca.public_bytes(pem)),
        _write(os.path.join(directory, "tls-cert.pem"), cert.public_bytes(pem)),
        _write(
            os.path.join(directory, "tls-key.pem"),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            0o600,
        ),
    )


class Process:
    """
    A child process with its output in a file, stopped at cleanup.
    """

    def __init__(
        self, case: SynchronousTestCase, name: str, args: list[str], directory: str, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = os.path.join(directory, f"{name}.log")
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=directory, env={**os.environ, **(env or {})}
        )
        log.close()
        case.addCleanup(self.stop)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


class RedisServer:
    """
    A redis-server on loopback with its AOF (C{appendonly yes}, no RDB
    snapshots) in its own directory; L{stop} and L{start} again keep the
    port and the data.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        directory: str,
        *,
        password: str | None = None,
        tls: tuple[str, str, str] | None = None,
        replica_of: RedisServer | None = None,
        appendfsync: str = "always",
    ) -> None:
        """
        @param tls: C{(ca, cert, key)} files (L{make_tls_ca}): listen with
            TLS only (C{rediss://}).
        @param replica_of: Start as a replica of this (started) server.
        @param appendfsync: When the AOF is synced to disk (C{always},
            C{everysec}: what production runs, for benchmarks).
        """
        self.case = case
        self.binary = require("redis-server")
        self.tls = tls
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.password = password
        self.port = 0
        self.process: Process | None = None
        #: The port of the master this server starts as a replica of.
        self.replica_of: int | None = replica_of.port if replica_of is not None else None
        self.appendfsync = appendfsync
        case.addCleanup(self.stop)

    def url(self, db: int = 0, password: str | None = None) -> str:
        secret = self.password if password is None else password
        auth = f":{secret}@" if secret else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """
        Start on a fresh port the first time, on the same one afterwards.
        """
        if self.port:
            self._start(self.port)
        else:
            start_retrying(lambda: self._start(free_port()), "redis-server")

    def _start(self, port: int) -> None:
        args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        if self.tls:
            ca, cert, key = self.tls
            args[1:3] = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
            args += ["--tls-ca-cert-file", ca, "--tls-cert-file", cert, "--tls-key-file", key]
        args += ["--appendfsync", self.appendfsync, "--dir", self.dir, "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = Process(self.case, "redis", args, self.dir)
        wait_listening(port, self.process.popen, self.process.log)
        self.port = port

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def kill(self) -> None:
        """
        Kill the server with C{SIGKILL} (no shutdown, no last write).
        """
        if self.process is not None:
            self.process.popen.kill()
            self.process.popen.wait()
            self.process = None

    def cli(self, *args: str) -> str:
        """
        The answer of C{redis-cli} to a command sent to this server.
        """
        return redis_cli(self.port, *args, password=self.password)

    def role(self) -> str:
        """
        C{master}, C{slave} (a replica) or, while it is down, C{""}.
        """
        return self.cli("ROLE").split("\n", 1)[0] if self.process is not None else ""

    def sentinel(
        self, master: str, *, quorum: int = 1, down_after_ms: int | None = None, failover_timeout_ms: int | None = None
    ) -> int:
        """
        Start a Sentinel watching this server as C{master}, in a directory
        of its own (Sentinel rewrites its config file).

        @param quorum: How many Sentinels must agree the master is down.
        @param down_after_ms: How long the master may not answer before it
            is considered down (Sentinel's default: 30 s).
        @param failover_timeout_ms: Sentinel's C{failover-timeout}.
        @return: The Sentinel's port.
        """

        def start() -> int:
            port = free_port()
            directory = os.path.join(self.dir, f"sentinel-{port}")
            os.makedirs(directory, exist_ok=True)
            lines = [f"port {port}", "bind 127.0.0.1", f"dir {directory}"]
            lines.append(f"sentinel monitor {master} 127.0.0.1 {self.port} {quorum}")
            if down_after_ms is not None:
                lines.append(f"sentinel down-after-milliseconds {master} {down_after_ms}")
            if failover_timeout_ms is not None:
                lines.append(f"sentinel failover-timeout {master} {failover_timeout_ms}")
            conf = _write(os.path.join(directory, "sentinel.conf"), "\n".join(lines) + "\n")
            process = Process(self.case, "sentinel", [self.binary, conf, "--sentinel"], directory)
            wait_listening(port, process.popen, process.log)
            return port

        return start_retrying(start, "redis sentinel")


def redis_cli(port: int, *args: str, password: str | None = None) -> str:
    """
    The answer of C{redis-cli} (raw output) to a command sent to the Redis
    or Sentinel on C{port}; C{""} when nothing answers there.
    """
    auth = ["--no-auth-warning", "-a", password] if password else []
    result = subprocess.run(
        [require("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *auth, "--raw", *args],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.stdout.strip()


def sentinel_fields(port: int, *args: str) -> dict[str, str]:
    """
    The answer of the Sentinel on C{port} to C{SENTINEL args} (one master's
    or replica's fields) as a dictionary.
    """
    lines = redis_cli(port, "SENTINEL", *args).splitlines()
    return dict(zip(lines[0::2], lines[1::2], strict=False))


class Sentinels:
    """
    A master watched by several Sentinels that agree (a quorum) before they
    fail over to a replica quickly: the master is down after
    C{down_after_ms} without answering.
    """

    def __init__(
        self, master: RedisServer, name: str, *, count: int = 3, quorum: int = 2, down_after_ms: int = 1000
    ) -> None:
        self.name = name
        self.ports = [
            master.sentinel(name, quorum=quorum, down_after_ms=down_after_ms, failover_timeout_ms=3000)
            for _ in range(count)
        ]

    def url(self, db: int = 0) -> str:
        """
        The C{redis+sentinel://} storage URL naming every Sentinel.
        """
        return f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in self.ports)}/{self.name}/{db}"

    def master_ports(self) -> set[int]:
        """
        The master's port according to each Sentinel.
        """
        return {
            int(redis_cli(p, "SENTINEL", "get-master-addr-by-name", self.name).splitlines()[-1]) for p in self.ports
        }

    def ready(self, replicas: int) -> bool:
        """
        Every Sentinel knows the others and C{replicas} replicas: a failover
        can happen.
        """
        expected = {"num-other-sentinels": str(len(self.ports) - 1), "num-slaves": str(replicas)}
        for port in self.ports:
            master = sentinel_fields(port, "master", self.name)
            if any(master.get(field) != value for field, value in expected.items()):
                return False
        return True


class Pebble:
    """
    One Pebble CA: HTTPS on a free port, DNS through C{dns_server}, HTTP-01
    fetches to C{http_port}.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        directory: str,
        *,
        dns_server: str,
        http_port: int,
        eab_keys: dict[str, str] | None = None,
        name: str = "pebble",
    ) -> None:
        self.case = case
        self.binary = require("pebble")
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir)
        self.name = name
        self.tls_ca, cert, key = make_tls_ca(self.dir)
        self.port = free_port()
        self.management_port = free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": cert,
                "privateKey": key,
                "httpPort": http_port,
                # Where Pebble would connect for TLS-ALPN-01 (never used).
                "tlsPort": closed_port(case),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": bool(eab_keys),
                **({"externalAccountMACKeys": eab_keys} if eab_keys else {}),
            }
        }
        self.config = _write(os.path.join(self.dir, "pebble.json"), json.dumps(config, indent=2))
        self.dns_server = dns_server
        self.process: Process | None = None

    @property
    def directory_url(self) -> str:
        return f"https://localhost:{self.port}/dir"

    def start(self) -> None:
        self.process = Process(
            self.case,
            self.name,
            [self.binary, "-config", self.config, "-dnsserver", self.dns_server, "-strict=false"],
            self.dir,
            # One alternate root: its chain is passed through to the clients.
            env={
                "PEBBLE_VA_NOSLEEP": "1",
                "PEBBLE_WFE_NONCEREJECT": "0",
                "PEBBLE_AUTHZREUSE": "100",
                "PEBBLE_ALTERNATE_ROOTS": "1",
            },
        )
        wait_listening(self.port, self.process.popen, self.process.log)
        wait_listening(self.management_port, self.process.popen, self.process.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def root_pem(self) -> str:
        return self.root_pem_at(0)

    def root_pem_at(self, index: int) -> str:
        response = requests.get(
            f"https://localhost:{self.management_port}/roots/{index}", verify=self.tls_ca, timeout=10
        )
        response.raise_for_status()
        return response.text

    def log(self) -> str:
        return self.process.log() if self.process else ""


class Unbound:
    """
    The CA's recursive resolver: the customer zone as upstream data, the dcv
    zone stubbed to the appliance's DNS server.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        directory: str,
        *,
        dcv_port: int,
        delegated: tuple[str, ...] = DELEGATED,
        txt: dict[str, str] | None = None,
        name: str = "unbound",
        more_dcv_ports: tuple[int, ...] = (),
    ) -> None:
        """
        @param txt: TXT records (name to value) in the customer zone.
        @param more_dcv_ports: more DNS servers of the dcv zone (the other
            nodes of a cluster, as more NS records would give them).
        """
        self.case = case
        self.binary = require("unbound", "/usr/sbin/unbound")
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir)
        self.port = free_port()
        records = [
            f"$ORIGIN {CUSTOMER_ZONE}.",
            f"@ 300 IN SOA ns.{CUSTOMER_ZONE}. hostmaster.{CUSTOMER_ZONE}. 1 3600 600 86400 60",
            f"@ 300 IN NS ns.{CUSTOMER_ZONE}.",
            "ns 300 IN A 127.0.0.1",
        ]
        for name in CUSTOMER_NAMES:
            records.append(f"{name}. 300 IN A 127.0.0.1")
        for name in delegated:
            records.append(f"_acme-challenge.{name}. 60 IN CNAME {name}.{DCV_ZONE}.")
        for name, value in (txt or {}).items():
            records.append(f'{name}. 60 IN TXT "{value}"')
        zonefile = _write(os.path.join(self.dir, "customer.zone"), "\n".join(records) + "\n")
        self.config = _write(
            os.path.join(self.dir, "unbound.conf"),
            f"""
server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{self.dir}"
    pidfile: "{self.dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    # Validation values change from one order to the next: never answer
    # from a cache.
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
    infra-host-ttl: 1
    # unbound answers NXDOMAIN for the special-use .test by default.
    local-zone: "test." nodefault
    domain-insecure: "{DCV_ZONE}"
    domain-insecure: "{CUSTOMER_ZONE}"

auth-zone:
    name: "{CUSTOMER_ZONE}."
    zonefile: "{zonefile}"
    for-upstream: yes
    for-downstream: no
    fallback-enabled: no

stub-zone:
    name: "{DCV_ZONE}."
    stub-addr: 127.0.0.1@{dcv_port}
{"".join(f"    stub-addr: 127.0.0.1@{port}{chr(10)}" for port in more_dcv_ports)}""",
        )
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        check = subprocess.run(
            [require("unbound-checkconf", "/usr/sbin/unbound-checkconf"), self.config], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise AssertionError(f"unbound config: {check.stdout}{check.stderr}")
        self.process = process = Process(
            self.case, os.path.basename(self.dir), [self.binary, "-d", "-c", self.config], self.dir
        )

        def answering() -> bool:
            if process.popen.poll() is not None:
                if "address already in use" in process.log().lower():
                    raise AddressInUse(process.log())
                raise AssertionError(f"unbound exited with {process.popen.returncode}:\n{process.log()}")
            return dig(self.port, f"ns.{CUSTOMER_ZONE}", "A", "+short").strip() == "127.0.0.1"

        wait_for(answering, 10, f"unbound to answer on {self.address}")


def nginx_main(directory: str, *, connections: int = 64) -> str:
    """
    The start of an nginx config for a test nginx in C{directory} (in the
    foreground, its files there), up to the first line inside C{http}.
    """
    return f"""daemon off;
master_process off;
user root;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log info;
events {{ worker_connections {connections}; }}
http {{
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;"""


class Nginx:
    """
    The customer's web server: C{/.well-known/} proxied to the file proxy
    for every delegated name; other hosts get nginx's own 404.
    """

    def __init__(
        self, case: SynchronousTestCase, directory: str, *, fileproxy_port: int, proxied: tuple[str, ...] = DELEGATED
    ) -> None:
        self.case = case
        self.binary = require("nginx", "/usr/sbin/nginx")
        self.dir = os.path.join(directory, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"))
        self.port = free_port()
        self.access_log = os.path.join(self.dir, "logs", "access.log")
        self.config = _write(
            os.path.join(self.dir, "nginx.conf"),
            f"""
{nginx_main(self.dir)}
    log_format withhost '$host "$request" $status via=$upstream_addr ua="$http_user_agent"';
    access_log {self.access_log} withhost;
    server {{
        listen 127.0.0.1:{self.port} default_server;
        server_name _;
        location / {{ return 404; }}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        server_name {" ".join(proxied)};
        # The rule the appliance asks customers to add (etc/nginx-fileproxy.conf).
        location /.well-known/acme-challenge/ {{
            proxy_pass http://127.0.0.1:{fileproxy_port};
            proxy_set_header Host $host;
        }}
        location /.well-known/pki-validation/ {{
            proxy_pass http://127.0.0.1:{fileproxy_port};
            proxy_set_header Host $host;
        }}
        location / {{ return 404; }}
    }}
}}
""",
        )
        self.process: Process | None = None

    def start(self) -> None:
        self.process = Process(self.case, "nginx", [self.binary, "-p", self.dir, "-c", self.config], self.dir)
        wait_listening(self.port, self.process.popen, self.log)

    def log(self) -> str:
        """
        nginx's output and its error log.
        """
        error_log = os.path.join(self.dir, "logs", "error.log")
        text = self.process.log() if self.process else ""
        if os.path.exists(error_log):
            with open(error_log, errors="replace") as f:
                text += f.read()
        return text

    def access(self) -> str:
        with open(self.access_log, errors="replace") as f:
            return f.read()


class LoadBalancer:
    """
    nginx as a round-robin TLS load balancer in front of appliance nodes'
    HTTPS ports (no sticky sessions): a node that refuses connections is
    skipped, the request retried on the next one (POSTs too) and the node
    left out for a second.
    """

    def __init__(self, case: SynchronousTestCase, directory: str) -> None:
        self.case = case
        self.binary = require("nginx", "/usr/sbin/nginx")
        self.dir = os.path.join(directory, "lb")
        os.makedirs(os.path.join(self.dir, "logs"))
        self.tls_ca, self.cert, self.key = make_tls_ca(self.dir)
        self.port = free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, node_ports: list[int]) -> None:
        servers = "".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=1s;\n" for port in node_ports)
        config = _write(
            os.path.join(self.dir, "nginx.conf"),
            f"""
{nginx_main(self.dir, connections=256)}
    log_format lb '"$request" $status via=$upstream_addr';
    access_log {self.dir}/logs/access.log lb;
    upstream appliances {{
{servers}    }}
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        location / {{
            proxy_pass https://appliances;
            proxy_ssl_verify off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout non_idempotent;
        }}
    }}
}}
""",
        )
        self.process = Process(self.case, "lb", [self.binary, "-p", self.dir, "-c", config], self.dir)
        wait_listening(self.port, self.process.popen, self.process.log)

    def access(self) -> str:
        with open(os.path.join(self.dir, "logs", "access.log"), errors="replace") as f:
            return f.read()


def dig(port: int, name: str, rtype: str = "A", *options: str, server: str = "127.0.0.1") -> str:
    result = subprocess.run(
        [require("dig"), f"@{server}", "-p", str(port), name, rtype, "+time=2", "+tries=1", *options],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout
