"""
Issuance throughput: certificate flows per second through the appliance
with its built-in CA and a policy without validation, versus Pebble with
always-valid validation, the same client processes for both.

    python -m bench.issuance [--seconds S] [--rounds R] [--processes N] [--poll SECONDS] [--workers 1,2]

Every server is started first.  Then, in each of R rounds (5), for each
server in turn (the order reversed every other round), N processes
(certbot's C{acme} library) register one account each and repeat the flow
for S/R seconds: new order (a name not ordered before) →
authorizations → answer the challenge where one is pending (Pebble) →
finalize → poll the order every C{--poll} seconds → download the
certificate.  Prints flows/s of each side, the ratio appliance/Pebble, the
CPU time each server and the client processes used per flow, the share of
the machine's CPU left idle, and the appliance's resident memory (VmRSS,
all its processes) after the runs.  Alternating the sides makes a
slow spell of the machine fall on all of them.
C{--workers} runs an appliance per C{[acme] workers} count given: by
default one process and two (the configuration the README gives a 2-core
box that must keep up with a CA of Pebble's speed).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

import josepy
from acme import challenges, client, messages
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.test_acme_library import new_csr
from tests.integration.test_workers import WorkersAppliance
from tests.integration.tools import closed_port, free_port
from tests.integration.world import Pebble

from ._options import counts, positive
from ._report import against
from .fleet import Harness

TARGET = 1.0
RSS_TARGET_MIB = 150
DOMAIN = "example.com"


def _flow(acme: client.ClientV2, key: josepy.JWKEC, poll: float) -> None:
    """One certificate for a new name, start to download."""
    pem, _ = new_csr([f"{uuid.uuid4().hex[:16]}.{DOMAIN}"])
    order = acme.new_order(pem)
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_PENDING:
            for challenge in authz.body.challenges:
                if isinstance(challenge.chall, challenges.HTTP01):
                    acme.answer_challenge(challenge, challenge.response(key))
                    break
    for authz in order.authorizations:
        while acme._authzr_from_response(acme._post_as_get(authz.uri), uri=authz.uri).body.status != (
            messages.STATUS_VALID
        ):
            time.sleep(poll)
    response = acme._post(order.body.finalize, messages.CertificateRequest(csr=x509.load_pem_x509_csr(pem)))
    while True:
        body = messages.Order.from_json(response.json())
        if body.status == messages.STATUS_VALID and body.certificate is not None:
            acme._post_as_get(body.certificate)
            return
        if body.status == messages.STATUS_INVALID:
            raise RuntimeError(f"order {order.uri} is invalid: {body.error}")
        time.sleep(poll)
        response = acme._post_as_get(order.uri)


def _worker(directory_url: str, verify: str, seconds: float, poll: float, start: Any, results: Any) -> None:
    """One client process: an account, then flows until the time is up."""
    try:
        key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = client.ClientNetwork(key, alg=josepy.ES256, verify_ssl=verify, user_agent="bench")  # type: ignore[arg-type]
        acme = client.ClientV2(client.ClientV2.get_directory(directory_url, net), net)
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        start.wait()
        end = time.monotonic() + seconds
        cpu = time.process_time()
        flows = 0
        while time.monotonic() < end:
            _flow(acme, key, poll)
            flows += 1
        results.put((flows, None, time.process_time() - cpu))
    except Exception as e:
        results.put((0, f"{e.__class__.__name__}: {e}", 0.0))


@frozen
class Run:
    """
    What the client processes did in one run: flows, in seconds, using
    C{cpu} seconds of CPU time (all of them, flows only), while the machine
    was idle C{idle} of C{ticks} (all cores).
    """

    flows: int
    seconds: float
    cpu: float
    idle: int
    ticks: int


def run_clients(directory_url: str, verify: str, processes: int, seconds: float, poll: float) -> Run:
    """The flows C{processes} client processes completed in about C{seconds}."""
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(directory_url, verify, seconds, poll, start, results))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)  # let the processes register their accounts before the clock starts
        started = time.monotonic()
        idle, ticks = idle_and_total()
        start.set()
        try:
            outcomes = [results.get(timeout=seconds + 120) for _ in workers]
        except queue.Empty:
            raise RuntimeError(f"a client process was still busy {seconds + 120:g} s after the start") from None
        elapsed = time.monotonic() - started
        idle_after, ticks_after = idle_and_total()
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.kill()
                w.join()
    errors = [e for _, e, _ in outcomes if e is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} client process(es) failed: {errors[0]}")
    return Run(
        sum(n for n, _, _ in outcomes),
        elapsed,
        sum(cpu for _, _, cpu in outcomes),
        idle_after - idle,
        ticks_after - ticks,
    )


def vm_rss_mib(pid: int) -> float:
    """The resident set of process C{pid} in MiB (VmRSS of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def pebble(harness: Harness) -> Pebble:
    """A Pebble that finds every challenge valid without looking."""
    os.environ["PEBBLE_VA_ALWAYS_VALID"] = "1"  # the Pebble process inherits it (NOSLEEP, NONCEREJECT are set)
    directory = os.path.abspath(harness.mktemp())
    os.makedirs(directory)
    ca = Pebble(harness, directory, dns_server=f"127.0.0.1:{closed_port(harness)}", http_port=free_port())  # type: ignore[arg-type]
    ca.start()
    return ca


def appliance(harness: Harness, extra: str, profile: str | None, workers: int = 1) -> WorkersAppliance:
    """
    The real twistd with the built-in CA, SQLite storage, no validation
    and C{workers} processes; under cProfile (the main worker), its
    statistics saved to C{profile} at exit, if given.
    """
    # The clients order faster than Let's Encrypt's 300 orders per account
    # per 3 hours, the appliance's default.
    limits = "" if "[limits]" in extra else "[limits]\naccount_orders = 0\n"
    app = WorkersAppliance(harness, workers=workers, extra=limits + extra)  # type: ignore[arg-type]
    if profile is not None:
        app.twistd_options = [f"--profile={os.path.abspath(profile)}", "--profiler=cprofile", "--savestats"]
    app.start()
    app.wait_workers()
    return app


def appliance_pids(app: WorkersAppliance) -> list[int]:
    """
    The appliance's processes, main and workers.
    """
    assert app.process is not None
    return [app.process.pid, *app.worker_pids().values()]


def cpu_seconds(pids: list[int]) -> float:
    """
    The CPU time (user and system) processes C{pids} used so far.
    """
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@frozen
class Server:
    """
    One side of the comparison: its directory, the CA file that verifies
    its TLS certificate, and its processes (for their CPU time).
    """

    label: str
    directory: str
    verify: str
    pids: Callable[[], list[int]]


def idle_and_total() -> tuple[int, int]:
    """
    The machine's idle (and I/O wait) and total CPU time so far, in ticks
    of all cores (the C{cpu} line of /proc/stat).
    """
    with open("/proc/stat") as f:
        ticks = [int(n) for n in f.readline().split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


@frozen
class Side:
    """
    One side's figures: flows/s; the CPU time its server and the client
    processes used per flow; the share of the machine's CPU time left idle
    while it ran.
    """

    rate: float
    cpu_ms: float
    client_cpu_ms: float
    idle: float


def _side(runs: list[tuple[Run, float]]) -> Side:
    """One side's figures from its runs and its server's CPU seconds in each."""
    flows = sum(run.flows for run, _ in runs)
    counted = max(flows, 1)
    return Side(
        flows / sum(run.seconds for run, _ in runs),
        1000 * sum(cpu for _, cpu in runs) / counted,
        1000 * sum(run.cpu for run, _ in runs) / counted,
        sum(run.idle for run, _ in runs) / max(sum(run.ticks for run, _ in runs), 1),
    )


def measure(servers: list[Server], args: argparse.Namespace) -> dict[str, Side]:
    """
    Warm every server up, then run the clients against each in turn,
    C{args.rounds} rounds of C{args.seconds / args.rounds} seconds (the
    order reversed every other round), so that a slow spell of the machine
    falls on every side alike.
    """
    for server in servers:
        run_clients(server.directory, server.verify, args.processes, min(2.0, args.seconds), args.poll)
    # Each side's runs, with the CPU time its server used in each.
    runs: dict[str, list[tuple[Run, float]]] = {s.label: [] for s in servers}
    for round_number in range(args.rounds):
        for server in servers if round_number % 2 == 0 else servers[::-1]:
            before = cpu_seconds(server.pids())
            run = run_clients(server.directory, server.verify, args.processes, args.seconds / args.rounds, args.poll)
            runs[server.label].append((run, cpu_seconds(server.pids()) - before))
    sides = {}
    for label, done in runs.items():
        side = _side(done)
        sides[label] = side
        print(
            f"{label}: {side.rate:.1f} flows/s, CPU a flow: server {side.cpu_ms:.1f} ms, "
            f"clients {side.client_cpu_ms:.1f} ms; machine idle {side.idle:.0%}",
            flush=True,
        )
    return sides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The client options bench.issuance and bench.cluster share."""
    parser.add_argument("--seconds", type=positive(float), default=15.0, help="measured seconds per side (15)")
    parser.add_argument("--rounds", type=positive(int), default=5, help="rounds the seconds are split into (5)")
    parser.add_argument("--processes", type=positive(int), default=4, help="client processes (4)")
    parser.add_argument("--poll", type=positive(float), default=0.02, help="client poll interval in seconds (0.02)")


def _label(workers: int) -> str:
    return f"appliance (built-in CA, validation none, workers = {workers})"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.issuance", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--profile", metavar="FILE", help="run the appliance under cProfile, statistics to FILE")
    parser.add_argument("--extra", default="", help="more appliance configuration (TOML)")
    parser.add_argument(
        "--workers",
        type=counts("worker counts", "1,2", 1, 64),
        default=[1, 2],
        help="[acme] workers counts to run, comma-separated (1,2)",
    )
    args = parser.parse_args(argv)
    if args.profile and len(args.workers) > 1:
        parser.error("--profile profiles one appliance: give one --workers count")
    harness = Harness()
    try:
        appliances = {w: appliance(harness, args.extra, args.profile, w) for w in args.workers}
        ca = pebble(harness)
        servers = [
            Server(_label(w), app.directory("shop"), app.tls_cert, functools.partial(appliance_pids, app))
            for w, app in appliances.items()
        ]
        servers.append(Server("Pebble (always-valid)", ca.directory_url, ca.tls_ca, lambda: [ca.process.popen.pid]))  # type: ignore[union-attr]
        sides = measure(servers, args)
        rss = {w: sum(vm_rss_mib(pid) for pid in appliance_pids(app)) for w, app in appliances.items()}
        for app in appliances.values():
            app.stop()
    finally:
        harness.close()
    pebble_side = sides["Pebble (always-valid)"]
    print()
    print("| measure | appliance | Pebble | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for workers in args.workers:
        side = sides[_label(workers)]
        ratio, verdict = against(side.rate / pebble_side.rate, TARGET)
        print(
            f"| issuance flows/s, workers = {workers} ({args.processes} processes, {args.seconds:g} s "
            f"in {args.rounds} rounds) | {side.rate:.1f} | {pebble_side.rate:.1f} "
            f"| {ratio} | ≥ {TARGET}x ({verdict}) |"
        )
        print(
            f"| server CPU a flow, workers = {workers} | {side.cpu_ms:.1f} ms | {pebble_side.cpu_ms:.1f} ms "
            f"| {side.cpu_ms / max(pebble_side.cpu_ms, 0.001):.1f}x | |"
        )
        clients = side.client_cpu_ms / max(pebble_side.client_cpu_ms, 0.001)
        print(
            f"| client CPU a flow, workers = {workers} | {side.client_cpu_ms:.1f} ms "
            f"| {pebble_side.client_cpu_ms:.1f} ms | {clients:.1f}x | |"
        )
        print(f"| machine CPU idle, workers = {workers} | {side.idle:.0%} | {pebble_side.idle:.0%} | | |")
        print(
            f"| appliance VmRSS after the run, workers = {workers} (all processes) | {rss[workers]:.0f} MiB | | "
            f"| < {RSS_TARGET_MIB} MiB ({'meets' if rss[workers] < RSS_TARGET_MIB else 'misses'}) |"
        )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
