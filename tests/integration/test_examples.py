"""
The sample files in C{etc/} checked by the tool that reads them in
production, so an example cannot rot unnoticed:

  - C{etc/prometheus/*.yml}: C{promtool check rules} and C{check config};
  - C{etc/rsyslog-acme-appliance.conf}: C{rsyslogd -N1};
  - C{etc/acme-appliance.service}: C{systemd-analyze verify};
  - C{etc/nginx-fileproxy.conf}: C{nginx -t}, included in a server block;
  - C{etc/*.toml}: the appliance's own config loader;
  - C{etc/dns-cname-delegation.md}: its records, as zones, by
    C{named-checkzone}, and its C{[section] key} references by the loader's
    key lists.

Under CI (C{CI} set) a missing tool fails the test, naming the binary and its
Debian package; elsewhere it skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.config import load_config
from acme_appliance.config._sections import SECTIONS
from acme_appliance.stats import Metrics
from acme_appliance.storage import redis_store

from .tools import free_port, require, start_retrying, wait_for, wait_listening
from .world import Process, make_tls_ca, nginx_main, sentinel_fields

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ETC = os.path.join(ROOT, "etc")
PROMETHEUS = os.path.join(ETC, "prometheus")

#: Every file in etc/ and the test class that checks it.
CHECKED = {
    "acme-appliance.service": "SystemdUnitTests",
    "acme-appliance.toml": "ConfigFileTests",
    "production.example.toml": "ConfigFileTests",
    "dns-cname-delegation.md": "DelegationDocTests",
    "nginx-fileproxy.conf": "NginxSnippetTests",
    "rsyslog-acme-appliance.conf": "RsyslogTests",
    "prometheus/acme-appliance-alerts.yml": "PrometheusTests",
    "prometheus/scrape.yml": "PrometheusTests",
    "redis.example.conf": "RedisConfigTests",
    "cluster/node-1.toml": "ConfigFileTests",
    "cluster/node-2.toml": "ConfigFileTests",
    "cluster/redis.conf": "ClusterExampleTests",
    "cluster/nginx-lb.conf": "ClusterExampleTests",
    "cluster/dcv-zone.txt": "ClusterExampleTests",
    "cluster/sentinel.conf": "ClusterExampleTests",
}


def etc_files() -> list[str]:
    """
    The files under etc/, relative to it, without the quick start's state
    (etc/var/, made when the appliance runs from etc/acme-appliance.toml).
    """
    found = []
    for directory, subdirs, files in os.walk(ETC):
        subdirs[:] = [d for d in subdirs if not (directory == ETC and d == "var")]
        found += [os.path.relpath(os.path.join(directory, f), ETC) for f in files]
    return sorted(found)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


class ToolTestCase(SynchronousTestCase):
    def tempdir(self) -> str:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    def run_tool(self, args: list[str], cwd: str | None = None) -> str:
        """
        Run a checker; fail with its output unless it exits 0.  Returns its
        stdout and stderr together.
        """
        result = subprocess.run(
            args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, f"{' '.join(args)} exited {result.returncode}:\n{output}")
        return output


class CompletenessTests(SynchronousTestCase):
    def test_every_example_is_checked(self) -> None:
        """
        Every file in etc/ has a checker here; a new example needs one.
        """
        self.assertEqual(etc_files(), sorted(CHECKED))
        for name in set(CHECKED.values()):
            self.assertIn(name, globals())

    def test_references_to_etc_exist(self) -> None:
        """
        C{etc/NAME} mentioned in the examples or the README names a file
        that exists.
        """
        texts = {name: read(os.path.join(ETC, name)) for name in CHECKED}
        texts["README.md"] = read(os.path.join(ROOT, "README.md"))
        for name, text in texts.items():
            for ref in re.findall(r"(?<![\w/])etc/([\w./-]*[\w-])", text):
                if not ref.startswith("var"):
                    self.assertTrue(os.path.exists(os.path.join(ETC, ref)), f"{name} refers to missing etc/{ref}")

    def test_config_keys_mentioned_exist(self) -> None:
        """
        C{[section] key} mentioned in the comments and docs of etc/ is a key
        the config loader knows.
        """
        seen = 0
        for name in CHECKED:
            for section, key in re.findall(r"\[([a-z]+)\][ \t]+`?([a-z_]+)", read(os.path.join(ETC, name))):
                self.assertIn(key, SECTIONS.get(section, ()), f"{name}: [{section}] {key} is not a config key")
                seen += 1
        self.assertGreaterEqual(seen, 5)


class PrometheusTests(ToolTestCase):
    def setUp(self) -> None:
        self.promtool = require("promtool")

    def rule_count(self) -> int:
        return len(
            re.findall(r"^\s*- (?:alert|record):", read(os.path.join(PROMETHEUS, "acme-appliance-alerts.yml")), re.M)
        )

    def test_alert_rules(self) -> None:
        """
        C{promtool check rules} accepts the alert rules and finds all of them.
        """
        output = self.run_tool([self.promtool, "check", "rules", "acme-appliance-alerts.yml"], cwd=PROMETHEUS)
        self.assertEqual(self.rule_count(), 5)
        self.assertIn(f"SUCCESS: {self.rule_count()} rules found", output)

    def test_alert_metrics_exist(self) -> None:
        """
        The metrics the rules alert on are metrics the appliance exports.
        """
        exported = set()
        for family in Metrics().registry.collect():
            exported |= {family.name, f"{family.name}_total"} if family.type == "counter" else {family.name}
        rules = read(os.path.join(PROMETHEUS, "acme-appliance-alerts.yml"))
        used = set(re.findall(r"\bacme_appliance_\w+", rules))
        self.assertEqual(len(used), 5)
        self.assertEqual(used - exported, set())

    def test_scrape_config(self) -> None:
        """
        C{promtool check config} accepts the scrape config (with its bearer
        token file present) and the rule file it loads.
        """
        work = self.tempdir()
        key = write(os.path.join(work, "acme-appliance.key"), "secret\n")
        scrape = read(os.path.join(PROMETHEUS, "scrape.yml"))
        self.assertIn("credentials_file: /etc/prometheus/acme-appliance.key\n", scrape)
        write(os.path.join(work, "scrape.yml"), scrape.replace("/etc/prometheus/acme-appliance.key", key))
        shutil.copy(os.path.join(PROMETHEUS, "acme-appliance-alerts.yml"), work)
        output = self.run_tool([self.promtool, "check", "config", "scrape.yml"], cwd=work)
        self.assertIn("SUCCESS: 1 rule files found", output)
        self.assertIn(f"SUCCESS: {self.rule_count()} rules found", output)


class RedisConfigTests(ToolTestCase):
    def test_redis_runs_with_it(self) -> None:
        """
        C{redis-server} starts with the example (a bad directive stops it)
        and has the settings the appliance needs.
        """
        self.check_redis_conf(os.path.join(ETC, "redis.example.conf"))

    def check_redis_conf(self, conf: str) -> int:
        redis_server, redis_cli = require("redis-server"), require("redis-cli")
        directory = self.tempdir()

        def start() -> int:
            port = free_port()
            args = [redis_server, conf, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
            args += ["--daemonize", "no"]
            process = Process(self, "redis", args, directory)
            wait_listening(port, process.popen, process.log)
            return port

        port = start_retrying(start, "redis-server")
        password = re.search(r"^requirepass (\S+)$", read(conf), re.MULTILINE)
        assert password is not None
        cli = [redis_cli, "-p", str(port), "--no-auth-warning", "-a", password.group(1)]
        for key, value in [("appendonly", "yes"), ("appendfsync", "everysec"), ("maxmemory-policy", "noeviction")]:
            self.assertEqual(self.run_tool([*cli, "CONFIG", "GET", key]).split(), [key, value])
        return port


class RsyslogTests(ToolTestCase):
    def test_validates(self) -> None:
        """
        C{rsyslogd -N1} (config validation, no daemon) accepts the snippet
        without an error or a warning.
        """
        rsyslogd = require("rsyslogd")
        output = self.run_tool([rsyslogd, "-N1", "-f", os.path.join(ETC, "rsyslog-acme-appliance.conf")])
        self.assertIn("End of config validation run", output)
        self.assertNotIn("error", output.lower())
        self.assertNotIn("warning", output.lower())


class SystemdUnitTests(ToolTestCase):
    def test_verify(self) -> None:
        """
        C{systemd-analyze verify} accepts the unit without a complaint.  It
        checks that C{ExecStart} is executable, so a temporary copy runs the
        installed C{twistd} instead of C{/opt/acme-appliance/bin/twistd}.
        """
        analyze = require("systemd-analyze")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.assertTrue(os.access(twistd, os.X_OK), twistd)
        unit = read(os.path.join(ETC, "acme-appliance.service"))
        self.assertIn("ExecStart=/opt/acme-appliance/bin/twistd ", unit)
        path = write(
            os.path.join(self.tempdir(), "acme-appliance.service"),
            unit.replace("ExecStart=/opt/acme-appliance/bin/twistd ", f"ExecStart={twistd} "),
        )
        output = self.run_tool([analyze, "verify", path])
        complaints = [line for line in output.splitlines() if "acme-appliance" in line]
        self.assertEqual(complaints, [])

    def test_command_line(self) -> None:
        """
        The unit's command line is one twistd accepts: with a config file
        that is missing it stops on that file, not on an option.
        """
        unit = read(os.path.join(ETC, "acme-appliance.service"))
        match = re.search(r"^ExecStart=/opt/acme-appliance/bin/twistd (.*) --config (\S+)$", unit, re.M)
        assert match is not None, unit
        self.assertEqual(match.group(2), "/etc/acme-appliance/acme-appliance.toml")
        missing = os.path.join(self.tempdir(), "missing.toml")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        result = subprocess.run(
            [twistd, *match.group(1).split(), "--config", missing],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn(f"{missing}: cannot read", output)


class NginxSnippetTests(ToolTestCase):
    def test_in_a_server_block(self) -> None:
        """
        C{nginx -t} accepts the snippet included in a port-80 server block.
        """
        nginx = require("nginx")
        work = self.tempdir()
        config = write(
            os.path.join(work, "nginx.conf"),
            f"""
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 16; }}
http {{
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    access_log off;
    server {{
        listen 127.0.0.1:80;
        server_name www.shop.test;
        include {os.path.join(ETC, "nginx-fileproxy.conf")};
    }}
}}
""",
        )
        output = self.run_tool([nginx, "-T", "-e", "stderr", "-p", work, "-c", config])
        self.assertIn("syntax is ok", output)
        self.assertIn("test is successful", output)
        self.assertNotIn("[warn]", output)
        self.assertEqual(output.count("proxy_set_header Host $host;"), 2)


class ConfigFileTests(ToolTestCase):
    def test_toml_files_load(self) -> None:
        """
        Every etc/*.toml loads with the appliance's own loader, from a copy
        whose TLS files exist when it says they must.
        """
        tomls = [name for name in CHECKED if name.endswith(".toml")]
        self.assertEqual(len(tomls), 4)
        for name in tomls:
            work = self.tempdir()
            path = os.path.join(work, os.path.basename(name))
            shutil.copy(os.path.join(ETC, name), path)
            with open(path, "rb") as f:
                self.make_tls_files(work, tomllib.load(f)["acme"])
            config = load_config(path)
            self.assertTrue(config.policies, name)
            for policy in config.policies:
                self.assertIn(policy.primary_ca, [ca.name for ca in config.cas])

    def make_tls_files(self, work: str, acme: dict[str, Any]) -> None:
        if acme.get("self_signed_tls") or not acme["listen"].startswith("ssl:"):
            return
        options = dict(part.split("=", 1) for part in acme["listen"].split(":") if "=" in part)
        _, cert, key = make_tls_ca(work)
        for option, made in (("privateKey", key), ("certKey", cert)):
            target = os.path.join(work, options[option])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(made, target)


class DelegationDocTests(ToolTestCase):
    def records(self) -> list[list[str]]:
        """
        The DNS records shown (indented) in the doc, comments dropped.
        """
        text = read(os.path.join(ETC, "dns-cname-delegation.md"))
        lines = [line.split(";")[0].split() for line in text.splitlines() if line.startswith("    ")]
        return [fields for fields in lines if len(fields) == 3 and fields[1] in ("CNAME", "NS", "A")]

    def test_records_form_valid_zones(self) -> None:
        """
        The records, in the zones they belong to, pass C{named-checkzone}.
        """
        checkzone = require("named-checkzone")
        zones: dict[str, list[str]] = {}
        for owner, rtype, data in self.records():
            zone = ".".join(owner.rstrip(".").split(".")[-2:]) + "."
            zones.setdefault(zone, []).append(f"{owner} 300 IN {rtype} {data}")
        self.assertEqual(sorted(zones), ["example.com.", "example.net."])
        work = self.tempdir()
        for zone, lines in zones.items():
            path = write(
                os.path.join(work, f"{zone}zone"),
                f"$ORIGIN {zone}\n$TTL 300\n@ IN SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 300\n"
                f"@ IN NS ns.{zone}\nns IN A 192.0.2.1\n" + "\n".join(lines) + "\n",
            )
            output = self.run_tool([checkzone, "-k", "fail", "-n", "fail", zone, path])
            self.assertIn(f"zone {zone.rstrip('.')}/IN: loaded serial 1", output)
            self.assertIn("OK", output)

    def test_records_match_the_production_example(self) -> None:
        """
        The CNAMEs have the shape the appliance's preflight asks for, into
        the dcv zone of etc/production.example.toml, and the delegation
        points at one of its name servers.
        """
        with open(os.path.join(ETC, "production.example.toml"), "rb") as f:
            validation = tomllib.load(f)["validation"]
        zone = validation["dns_zone"] + "."
        records = self.records()
        cnames = [(owner, data) for owner, rtype, data in records if rtype == "CNAME"]
        self.assertEqual(len(cnames), 2)
        for owner, target in cnames:
            self.assertTrue(owner.startswith("_acme-challenge."), owner)
            self.assertEqual(target, owner.removeprefix("_acme-challenge.") + zone)
        delegation = [data for owner, rtype, data in records if rtype == "NS" and owner == zone]
        self.assertEqual(len(delegation), 1)
        self.assertIn(delegation[0].rstrip("."), validation["dns_nameservers"])
        glue = [owner for owner, rtype, _ in records if rtype == "A"]
        self.assertEqual(glue, delegation)


class ClusterExampleTests(RedisConfigTests):
    """
    etc/cluster/: the Redis config runs, the load balancer passes
    C{nginx -t}, the delegation is a valid zone naming the nodes' name
    servers, and the node configs differ only in the node's name.
    """

    def test_redis_runs_with_it(self) -> None:
        self.check_redis_conf(os.path.join(ETC, "cluster", "redis.conf"))

    def test_sentinel(self) -> None:
        """
        A Sentinel runs with sentinel.conf, watching the Redis of redis.conf
        (so it knows its password) with a quorum of 2; the storage URL it
        tells the nodes to use names the three Sentinels and that master.
        """
        conf = read(os.path.join(ETC, "cluster", "sentinel.conf"))
        redis_port = self.check_redis_conf(os.path.join(ETC, "cluster", "redis.conf"))
        directory = self.tempdir()
        local = write(
            os.path.join(directory, "sentinel.conf"),
            conf.replace("redis-1.example.net 6379", f"127.0.0.1 {redis_port}"),
        )

        def start() -> int:
            port = free_port()
            args = [require("redis-server"), local, "--sentinel", "--port", str(port), "--bind", "127.0.0.1"]
            process = Process(self, "sentinel", [*args, "--dir", directory], directory)
            wait_listening(port, process.popen, process.log)
            return port

        port = start_retrying(start, "redis sentinel")

        # Connected (without the password: "master,disconnected") and INFO
        # answered (it needs the password; 0 until it is): auth-pass works.
        def informed() -> dict[str, str] | None:
            fields = sentinel_fields(port, "master", "appliance")
            refreshed = 0 < int(fields.get("info-refresh") or 0) < 30000
            return fields if fields.get("flags") == "master" and refreshed else None

        master = wait_for(informed, 20, "the Sentinel to read the master's INFO")
        assert master is not None
        self.assertEqual((master["quorum"], master["port"]), ("2", str(redis_port)))
        self.assertEqual((master["down-after-milliseconds"], master["failover-timeout"]), ("5000", "60000"))
        url = re.search(r'url = "(redis\+sentinel://[^"]+)"', conf)
        assert url is not None
        store = redis_store(url.group(1), reactor=MemoryReactorClock(), clock=Clock())
        self.assertEqual(len(store.address.sentinels), 3)
        self.assertEqual((store.address.master, store.address.password), ("appliance", "change-this-password"))
        self.assertIn("wait_replicas = 1", conf)

    def test_load_balancer(self) -> None:
        nginx = require("nginx")
        work = self.tempdir()
        _, cert, key = make_tls_ca(work)
        lb = read(os.path.join(ETC, "cluster", "nginx-lb.conf"))
        lb = lb.replace("/etc/nginx/tls/acme.example.net.pem", cert).replace("/etc/nginx/tls/acme.example.net.key", key)
        # Resolvable upstream hosts for the check.
        lb = re.sub(r"acme-\d\.example\.net", "127.0.0.1", lb)
        include = write(os.path.join(work, "lb.conf"), lb.replace("listen 443", "listen 127.0.0.1:443"))
        os.makedirs(os.path.join(work, "logs"))
        config = write(os.path.join(work, "nginx.conf"), f"{nginx_main(work)}\n    include {include};\n}}\n")
        output = self.run_tool([nginx, "-t", "-e", "stderr", "-p", work, "-c", config])
        self.assertIn("test is successful", output)
        self.assertNotIn("[warn]", output)

    def test_delegation_zone(self) -> None:
        checkzone = require("named-checkzone")
        records = [line.split(";")[0] for line in read(os.path.join(ETC, "cluster", "dcv-zone.txt")).splitlines()]
        records = [line for line in records if line.strip()]
        path = write(
            os.path.join(self.tempdir(), "example.net.zone"),
            "$ORIGIN example.net.\n$TTL 300\n@ IN SOA ns.example.net. hostmaster.example.net. 1 3600 600 86400 300\n"
            "@ IN NS ns.example.net.\nns IN A 192.0.2.1\n" + "\n".join(records) + "\n",
        )
        self.assertIn("OK", self.run_tool([checkzone, "-k", "fail", "-n", "fail", "example.net.", path]))
        servers = sorted(line.split()[-1].rstrip(".") for line in records if " NS " in line)
        for name in ("node-1.toml", "node-2.toml"):
            with open(os.path.join(ETC, "cluster", name), "rb") as f:
                validation = tomllib.load(f)["validation"]
            self.assertEqual(sorted(validation["dns_nameservers"]), servers)

    def test_nodes_differ_in_name_only(self) -> None:
        one, two = (read(os.path.join(ETC, "cluster", f"node-{n}.toml")) for n in (1, 2))
        self.assertEqual(one.replace("acme-1", "acme-2").replace("Node 1", "Node 2"), two)
