"""
The dcv DNS server against unbound serving the same zone from a zone file,
both on loopback, both questioned by dnsperf (4 clients) for the same time.

    python -m bench.dns [--seconds S] [--rounds N] [--profile]

Runs the appliance's DNS service alone in a subprocess twice: with the fast
path (the in-memory view, as twistd runs it) and without it ("before": every
query through twisted.names messages and the store), then unbound with an
auth-zone; C{--rounds} repeats the three, alternating, and keeps each one's
best rate (other load on the machine only ever lowers a rate).  Prints
queries/s, lost queries and the ratios to unbound.  With
C{--profile}, the fast-path server runs under cProfile and the functions
taking the most time are printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any

from tests.integration.tools import free_port, require, wait_for

from ._options import positive

ZONE = "dcv.test"
DOMAINS = [f"shop{i}.example.com" for i in range(8)]
VALUE = "kWwkYm1Qb3AcRj0X2PuC7JlD7xT8Cb4kTzBRaC3Ir0k"
CLIENTS = 4


def serve(port: int, fast: bool, profile: str | None) -> None:
    """
    The appliance's DNS service alone, on 127.0.0.1:C{port}, until SIGTERM.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from acme_appliance.storage import MemoryStore
    from acme_appliance.validation import DcvAuthority, DcvDNSServerFactory, ValidationValues, make_dns_services

    clock: Any = reactor
    values = ValidationValues(MemoryStore(clock))
    view = values.txt_view(clock) if fast else None
    for domain in DOMAINS:
        Deferred.fromCoroutine(values.add_txt(domain, VALUE, ttl=86400))
    authority = DcvAuthority(ZONE, [f"ns1.{ZONE}"], values, clock=clock, view=view)
    services = make_dns_services(
        DcvDNSServerFactory(authority, clock=clock), port=port, interface="127.0.0.1", reactor=clock
    )
    for service in [*services, *([view] if view else [])]:
        service.privilegedStartService()
        service.startService()
    if profile is None:
        clock.run()
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.runcall(clock.run)
    profiler.dump_stats(profile)


def answering(port: int) -> bool:
    """
    Whether a TXT query to 127.0.0.1:C{port} gets an answer.
    """
    query = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    query += b"".join(bytes([len(p)]) + p.encode() for p in f"{DOMAINS[0]}.{ZONE}".split(".")) + b"\x00\x00\x10\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(query, ("127.0.0.1", port))
        try:
            return s.recv(4096)[:2] == b"\x12\x34"
        except OSError:
            return False


def dnsperf(port: int, datafile: str, seconds: int) -> dict[str, float]:
    """
    dnsperf's queries/s and lost queries against 127.0.0.1:C{port}.
    """
    binary = require("dnsperf")
    command = [binary, "-s", "127.0.0.1", "-p", str(port), "-d", datafile, "-c", str(CLIENTS), "-l", str(seconds)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = {}
    for key, pattern in [("qps", r"Queries per second:\s+([\d.]+)"), ("lost", r"Queries lost:\s+(\d+)")]:
        match = re.search(pattern, output)
        if match is None:
            raise SystemExit(f"bench.dns: dnsperf printed no {key}:\n{output}")
        found[key] = float(match.group(1))
    return found


def appliance(
    directory: str, datafile: str, seconds: int, *, fast: bool = True, profile: bool = False
) -> dict[str, float]:
    port = free_port()
    command = [sys.executable, "-m", "bench.dns", "--serve", str(port), "--mode", "fast" if fast else "general"]
    profile_file = os.path.join(directory, "dns.prof")
    if profile:
        command += ["--profile-to", profile_file]
    try:
        return measure(command, port, os.path.join(directory, f"serve-{port}.log"), datafile, seconds)
    finally:
        if profile:
            print_profile(profile_file)


def measure(command: list[str], port: int, log_file: str, datafile: str, seconds: int) -> dict[str, float]:
    """
    dnsperf against the DNS server C{command} starts on C{port}, stopped
    afterwards; its output goes to C{log_file}.
    """
    with open(log_file, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or answering(port), 20, f"{command[0]} to answer")
        if process.poll() is not None:
            raise SystemExit(f"bench.dns: {' '.join(command)} exited with {process.returncode}")
        return dnsperf(port, datafile, seconds)
    finally:
        process.terminate()
        process.wait(30)


def print_profile(path: str) -> None:
    import pstats

    print("\nwhere the fast-path server's time goes (cProfile, top 15 by own time):")
    pstats.Stats(path, stream=sys.stdout).sort_stats("tottime").print_stats(15)


def unbound(directory: str, datafile: str, seconds: int) -> dict[str, float]:
    port = free_port()
    records = [
        f"$ORIGIN {ZONE}.",
        f"@ 60 IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 1209600 60",
        f"@ 3600 IN NS ns1.{ZONE}.",
        *(f'{domain} 60 IN TXT "{VALUE}"' for domain in DOMAINS),
    ]
    zonefile = os.path.join(directory, "dcv.zone")
    with open(zonefile, "w") as f:
        f.write("\n".join(records) + "\n")
    config = os.path.join(directory, "unbound.conf")
    with open(config, "w") as f:
        f.write(
            f'server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-daemonize: no\n  username: ""\n'
            f'  chroot: ""\n  directory: "{directory}"\n  pidfile: "{directory}/unbound.pid"\n  use-syslog: no\n'
            '  logfile: ""\n  access-control: 127.0.0.0/8 allow\n  local-zone: "test." nodefault\n'
            f'auth-zone:\n  name: "{ZONE}."\n  zonefile: "{zonefile}"\n  for-downstream: yes\n  for-upstream: no\n'
        )
    command = [require("unbound", "/usr/sbin/unbound"), "-d", "-c", config]
    return measure(command, port, os.path.join(directory, "unbound.log"), datafile, seconds)


def one_round(directory: str, datafile: str, seconds: int, profile: bool) -> dict[str, dict[str, float]]:
    """
    dnsperf against each server once.
    """
    return {
        "unbound (auth-zone)": unbound(directory, datafile, seconds),
        "appliance, general path (before)": appliance(directory, datafile, seconds, fast=False),
        "appliance, fast path": appliance(directory, datafile, seconds, profile=profile),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=positive(int), default=10, help="how long dnsperf runs against each server")
    parser.add_argument(
        "--rounds", type=positive(int), default=1, help="runs of each server, alternating; the best counts"
    )
    parser.add_argument("--profile", action="store_true", help="run the fast-path server under cProfile")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["fast", "general"], default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.mode == "fast", args.profile_to)
        return
    directory = tempfile.mkdtemp(prefix="bench-dns-")
    try:
        datafile = os.path.join(directory, "queries")
        with open(datafile, "w") as f:
            f.write("".join(f"{domain}.{ZONE} TXT\n" for domain in DOMAINS))
        results: dict[str, dict[str, float]] = {}
        for round in range(args.rounds):
            for name, result in one_round(directory, datafile, args.seconds, args.profile and round == 0).items():
                best = results.setdefault(name, {"qps": 0.0, "lost": 0.0})
                best["qps"] = max(best["qps"], result["qps"])
                best["lost"] += result["lost"]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    reference = results["unbound (auth-zone)"]["qps"]
    print(
        f"\ndnsperf, {CLIENTS} clients, {args.seconds} s x {args.rounds} round(s) each (best queries/s, all lost),"
        f" TXT queries for {len(DOMAINS)} names:"
    )
    for name, result in results.items():
        qps, lost = result["qps"], result["lost"]
        print(f"  {name:34} {qps:>10.0f} queries/s  {lost:>6.0f} lost  {qps / reference:5.2f}x unbound")


if __name__ == "__main__":
    main(sys.argv[1:])
