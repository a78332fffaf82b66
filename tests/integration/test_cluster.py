"""
Two appliance nodes on one Redis, behind a round-robin TLS load balancer
(nginx), ordering from one Pebble whose resolver (unbound) has both nodes'
DNS ports as the dcv zone's servers: a fleet validates once, a node killed
(-9) costs nothing, nor does a Redis restart, and two nodes starting together
register one upstream account.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, cast

import requests
from acme import errors, messages
from acme.client import ClientV2
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from .appliance import Appliance
from .test_acme_library import Client, new_csr
from .test_operations import Admin
from .test_pebble import unanswered, validations
from .tools import closed_port, free_port, start_retrying, wait_for
from .world import DCV_ZONE, LoadBalancer, Pebble, RedisServer, Unbound

WAVE = 12
T = TypeVar("T")

POLICY = """
[[policy]]
name = "dns"
primary_ca = "pebble"
validation = "dns-cname"
allowed_domains = ["shop.test", "*.shop.test"]
"""


class Node(Appliance):
    """
    One node: its own ports, state directory and DNS port; the cluster's
    Redis, CA and public URL (the load balancer's).
    """

    def __init__(self, case: SynchronousTestCase, *, name: str, public_url: str, **kw: Any) -> None:
        self.public_url = public_url
        self.dns_port = free_port()
        self.name = name
        super().__init__(case, **kw)

    def _configure(self) -> None:
        super()._configure()
        self.base_url = self.public_url
        with open(self.config) as f:
            text = f.read()
        text = text.replace(f'base_url = "https://127.0.0.1:{self.port}"', f'base_url = "{self.public_url}"')
        text = text.replace("[storage]", f'[cluster]\nnode_name = "{self.name}"\n\n[storage]')
        with open(self.config, "w") as f:
            f.write(text)


class ClusterWorld:
    """
    Redis + unbound + Pebble + two nodes + the load balancer.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.case = case
        start_retrying(self._start, "the cluster")

    def _start(self) -> None:
        case = self.case
        self.dir = os.path.abspath(case.mktemp())
        os.makedirs(self.dir)
        self.redis = RedisServer(case, os.path.join(self.dir, "redis"))
        self.redis.start()
        self.lb = LoadBalancer(case, self.dir)
        self.nodes: list[Node] = []
        dns_ports = [free_port(), free_port()]
        self.unbound = Unbound(case, self.dir, dcv_port=dns_ports[0], more_dcv_ports=(dns_ports[1],))
        self.unbound.start()
        self.pebble = Pebble(case, self.dir, dns_server=self.unbound.address, http_port=closed_port(case))
        self.pebble.start()
        for index, dns_port in enumerate(dns_ports):
            node = Node(
                case,
                name=f"node-{index + 1}",
                public_url=self.lb.url,
                storage=self.redis.url(),
                cas=self._ca(),
                policies=POLICY,
                extra=self._validation(dns_port),
            )
            self.nodes.append(node)
        self.lb.start([node.port for node in self.nodes])
        self.start_nodes()

    def start_nodes(self) -> None:
        """
        Start both nodes at the same moment.
        """
        for node in self.nodes:
            node.process = None
        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(node.start_once) for node in self.nodes]:
                future.result()

    def _ca(self) -> str:
        return f"""
[[ca]]
name = "pebble"
kind = "acme"
directory = "{self.pebble.directory_url}"
ca_bundle = "{self.pebble.tls_ca}"
"""

    def _validation(self, dns_port: int) -> str:
        return f"""
[validation]
dns_zone = "{DCV_ZONE}"
dns_listen_port = {dns_port}
dns_listen_interface = "127.0.0.1"
dns_nameservers = ["ns1.{DCV_ZONE}", "ns2.{DCV_ZONE}"]
resolver = "{self.unbound.address}"
preflight_allow_private = true

[issuance]
order_deadline = 120
"""

    def client(self, directory: str) -> Client:
        return Client(cast(Appliance, self.lb_trust()), directory)

    def lb_trust(self) -> Any:
        lb = self.lb

        class Trust:
            tls_cert = lb.tls_ca

        return Trust()


def retrying(step: Callable[[], T], what: str) -> T:
    """
    C{step}, again while the appliance answers that its storage is away (a
    503 C{serverInternal}, or a bare 503 to a HEAD) or the load balancer has
    no node to ask.
    """

    def attempt() -> tuple[T] | None:
        try:
            return (step(),)
        except messages.Error as e:
            if e.typ != "urn:ietf:params:acme:error:serverInternal":
                raise
        except errors.ClientError as e:
            # A HEAD newNonce answered 503 (no body to make a problem of).
            response = e.args[0] if e.args else None
            if not isinstance(response, requests.Response) or response.status_code != 503:
                raise
        except requests.exceptions.ConnectionError:
            pass
        return None

    result = wait_for(attempt, 90, what, interval=0.5)
    assert result is not None
    return result[0]


def finalize(acme: ClientV2, order: messages.OrderResource) -> messages.OrderResource:
    """
    Finalize C{order}; as the C{acme} library's C{finalize_order} does, an
    C{orderNotReady} (a finalize retried after one whose answer was lost,
    e.g. with its node killed, went through) leaves it to the polls.
    """
    try:
        return acme.begin_finalization(order)
    except messages.Error as e:
        if e.code != "orderNotReady":
            raise
        return order


def obtain(world: ClusterWorld, directory: str, name: str) -> tuple[str, str]:
    """
    One edge box through the load balancer: its order's URL and chain.
    """
    client = retrying(lambda: world.client(directory), "an account")
    pem, _ = new_csr([name], ec.generate_private_key(ec.SECP256R1()))
    order = retrying(lambda: client.acme.new_order(pem), "an order")
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=90)
    finalizing = retrying(lambda: finalize(client.acme, order), "finalize")
    final = retrying(lambda: client.acme.poll_finalization(finalizing, deadline), "the certificate")
    return order.uri, final.fullchain_pem


class ClusterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ClusterWorld(self)
        self.admin = Admin(self.world.nodes[1])
        self.directory = self.world.nodes[0].directory("dns")

    def wave(self, name: str) -> tuple[ThreadPoolExecutor, list[Future[tuple[str, str]]]]:
        pool = ThreadPoolExecutor(WAVE)
        self.addCleanup(pool.shutdown, wait=False, cancel_futures=True)
        return pool, [pool.submit(obtain, self.world, self.directory, name) for _ in range(WAVE)]

    def finished(self, futures: list[Future[tuple[str, str]]]) -> list[str]:
        orders = []
        for future in futures:
            try:
                uri, chain = future.result(timeout=120)
            except errors.IssuanceError as e:
                # Its message is empty: say why the order failed, and what
                # the nodes logged about it.
                warnings = [line for node in self.world.nodes for line in node.log().splitlines() if "failed" in line]
                self.fail(f"an order failed: {e.error}\n" + "\n".join(warnings[-20:]))
            self.assertIn("BEGIN CERTIFICATE", chain)
            orders.append(uri.rstrip("/").rsplit("/", 1)[-1])
        return orders

    def history(self, order_id: str) -> list[dict[str, Any]]:
        response = self.admin.get(f"/orders/{order_id}")
        self.assertEqual(response.status_code, 200, response.text)
        return cast(list[dict[str, Any]], response.json()["history"])

    def announced(self, order_id: str) -> bool:
        return any(e["event"] == "certificate.issued" for e in self.history(order_id))

    def issued_once(self, orders: list[str]) -> set[str | None]:
        """
        Each order valid, announced issued exactly once; the nodes that did.
        """
        nodes = set()
        for order_id in orders:
            # The journal is written in the background (again once the store
            # is back, after an outage).
            wait_for(functools.partial(self.announced, order_id), 30, f"order {order_id}'s certificate.issued")
            issued = [e for e in self.history(order_id) if e["event"] == "certificate.issued"]
            self.assertEqual(len(issued), 1, (order_id, issued))
            nodes.add(issued[0].get("node"))
        processing = self.admin.get("/orders?status=processing").json()
        self.assertEqual(processing, [])
        return nodes

    def test_cluster(self) -> None:
        world = self.world
        # d) two nodes started together registered one upstream account.
        _, wave = self.wave("fleet.shop.test")
        # a) a fleet through the load balancer: one upstream validation.
        orders = self.finished(wave)
        # One validation (and one more for each the CA got no answer to).
        retried = unanswered([node.log() for node in world.nodes], "fleet.shop.test")
        self.assertEqual(validations(world.pebble.log(), "fleet.shop.test"), 1 + retried, world.pebble.log()[-3000:])
        self.issued_once(orders)
        self.assertEqual(world.pebble.log().count("There are now 1 accounts in memory"), 1)
        self.assertNotIn("There are now 2 accounts", world.pebble.log())
        access = world.lb.access()
        for node in world.nodes:
            self.assertIn(f"via=127.0.0.1:{node.port}", access)
        health = self.admin.get("/health").json()
        self.assertEqual((health["node"], health["store_connected"], health["jobs"]), ("node-2", True, {}))

        earlier_orders = orders
        earlier = world.client(self.directory)

        # b) node 1 killed (-9) while a second wave is in flight.
        _, wave = self.wave("failover.shop.test")
        wait_for(
            lambda: self.admin.get("/orders?status=processing").json(), 60, "an order of the second wave in processing"
        )
        world.nodes[0].kill()
        orders = self.finished(wave)
        self.issued_once(orders)

        # c) Redis stopped and started again while a third wave is in flight.
        world.nodes[0].start_once()
        _, wave = self.wave("during.shop.test")
        wait_for(
            lambda: self.admin.get("/orders?status=processing").json(), 60, "an order of the third wave in processing"
        )
        counters = set(world.redis.cli("--scan", "--pattern", "stats/total/*").split())
        self.assertTrue(counters)
        world.redis.stop()
        wait_for(
            lambda: requests.get(f"{self.admin.base}/health", headers=self.admin.headers, timeout=5).status_code == 503,
            30,
            "node 2 to see Redis gone",
        )
        world.redis.start()
        orders = self.finished(wave)
        self.issued_once(orders)
        for node in world.nodes:
            self.assertIsNotNone(node.process)
            assert node.process is not None
            self.assertIsNone(node.process.poll(), node.log()[-3000:])
            self.assertNotIn("Traceback", node.log())
        # The token, the accounts and the orders from before are still there.
        again = earlier.acme.query_registration(earlier.regr)
        self.assertEqual(again.body.status, "valid")
        self.assertIsInstance(again, messages.RegistrationResource)
        self.assertLessEqual(counters, set(world.redis.cli("--scan", "--pattern", "stats/total/*").split()))
        for order_id in earlier_orders:
            response = self.admin.get(f"/orders/{order_id}")
            self.assertEqual((response.status_code, response.json()["status"]), (200, "valid"))
            self.assertTrue(self.announced(order_id))
        self.assertEqual(world.pebble.log().count("There are now 1 accounts in memory"), 1)
