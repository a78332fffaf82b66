"""
Tests for retention (records expire), the paged admin order list (issue
11, finding 4) and the policy re-check at finalize and in the issuance job
(finding 6).
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from attrs import evolve
from treq.testing import StubTreq

from acme_appliance.admin import AdminAPI
from acme_appliance.ca.local import LocalCA
from acme_appliance.core import ProblemType
from acme_appliance.issuance import IssuanceService
from acme_appliance.orders import AcmeRepository, Limits, Order, OrderStatus, Retention, order_cursor
from acme_appliance.storage import keys, put_record
from acme_appliance.testing import b64, make_csr, sample_policy
from acme_appliance.wire import messages as m

from .test_limits import Fixture

DAY = 86400.0


class RetentionTests(Fixture):
    def setUp(self) -> None:
        super().setUp()
        self.repo = AcmeRepository(
            self.store, clock=self.clock, retention=Retention(orders=30 * DAY, accounts=60 * DAY)
        )
        self.service = self.make_service(Limits())
        self.account = self.new_account(self.token, "acct1")

    def test_ready_order_expires_then_goes(self) -> None:
        """
        An order past its C{expires} is shown C{invalid} (RFC 8555 7.1.6);
        retention later it is gone with its authorizations and index
        entries.
        """
        order = self.wait(self.order())
        self.clock.advance(7 * DAY + 1)
        shown = self.wait(self.service.order(self.token, self.account, order.id))
        self.assertIs(shown.status, OrderStatus.INVALID)
        self.clock.advance(30 * DAY)
        problem = self.problem(self.service.order(self.token, self.account, order.id))
        self.assertEqual((problem.type, problem.status), (ProblemType.MALFORMED, 404))
        self.assertIsNone(self.wait(self.repo.authorization(order.authz_ids[0])))
        self.assertEqual(self.wait(self.repo.account_order_ids(self.account.id)), [])
        self.assertEqual(self.wait(self.repo.orders_page(10)), ([], None))

    def test_finished_order_kept_for_retention(self) -> None:
        order = self.wait(self.order())
        csr, _ = make_csr(["example.com"])
        self.wait(self.service.finalize(self.token, self.account, order, b64(csr)))
        self.wait(self.repo.update_order(order.id, lambda o: evolve(o, status=OrderStatus.VALID)))
        self.clock.advance(7 * DAY + 29 * DAY)
        self.assertIs(self.wait(self.repo.order(order.id)).status, OrderStatus.VALID)  # type: ignore[union-attr]
        self.clock.advance(DAY + 1)
        self.assertIsNone(self.wait(self.repo.order(order.id)))

    def test_idle_accounts_swept(self) -> None:
        """
        An account without orders goes after its retention; ordering keeps
        it (and its key index) alive.
        """
        idle = self.new_account(self.token, "idle")
        self.clock.advance(30 * DAY)
        self.wait(self.order())
        self.clock.advance(31 * DAY)
        self.assertIsNone(self.wait(self.repo.account(idle.id)))
        self.assertIsNone(self.wait(self.repo.account_by_thumbprint(self.token.id, idle.thumbprint)))
        kept = self.wait(self.repo.account_by_thumbprint(self.token.id, self.account.thumbprint))
        self.assertEqual(kept.id if kept else None, self.account.id)

    def test_orders_of_an_earlier_version_indexed_once(self) -> None:
        """
        Orders stored before the time index existed (no index entry, no
        expiry) are indexed at start-up, once, and expire like new ones.
        """
        order = self.wait(self.order())
        day = int(order.created // 86400)
        self.wait(self.store.delete(keys.order_by_time(day, order_cursor(order))))
        self.wait(self.store.delete(keys.order_day(day)))
        self.wait(put_record(self.store, keys.order(order.id), order))
        self.assertEqual(self.wait(self.repo.orders_page(10)), ([], None))
        self.assertEqual(self.wait(self.repo.index_stored_orders()), 1)
        self.assertEqual(self.wait(self.repo.orders_page(10)), ([order], None))
        self.assertEqual(self.wait(self.repo.index_stored_orders()), 0)
        self.clock.advance(7 * DAY + 30 * DAY + 1)
        self.assertIsNone(self.wait(self.repo.order(order.id)))

    def test_without_retention_kept(self) -> None:
        repo = AcmeRepository(self.store)
        account = self.new_account(self.token, "forever")
        self.wait(repo.put_account(account))
        self.clock.advance(1000 * DAY)
        self.assertIsNotNone(self.wait(repo.account(account.id)))


class OrderPageTests(Fixture):
    def test_pages_newest_first(self) -> None:
        self.service = self.make_service(Limits())
        ids = []
        for gap in (0, 10, 2 * DAY, 5, 9 * DAY):
            self.clock.advance(gap)
            ids.append(self.wait(self.order()).id)
        newest = ids[::-1]
        seen: list[str] = []
        before = None
        pages = 0
        while True:
            page, before = self.wait(self.repo.orders_page(2, before))
            seen.extend(o.id for o in page)
            pages += 1
            if before is None:
                break
        self.assertEqual((seen, pages), (newest, 3))

    def test_admin_list_paged(self) -> None:
        self.service = self.make_service(Limits())
        ids = []
        for gap in (0, DAY, DAY, DAY):
            self.clock.advance(gap)
            ids.append(self.wait(self.order()).id)
        admin = AdminAPI(api_key="k" * 32, store=self.store, clock=self.clock, repository=self.repo)
        http = StubTreq(admin.resource())

        def get(path: str) -> tuple[int, Any, list[str] | None]:
            d = http.get(f"http://admin.test{path}", headers={b"Authorization": [b"Bearer " + b"k" * 32]})  # type: ignore[attr-defined]
            http.flush()
            response = self.successResultOf(d)
            body = json.loads(self.successResultOf(response.content()))
            return response.code, body, response.headers.getRawHeaders("link")

        code, first, link = get("/orders?limit=3")
        self.assertEqual((code, [o["id"] for o in first]), (200, ids[:0:-1]))
        order = self.wait(self.repo.order(ids[1]))
        assert order is not None and link is not None
        self.assertEqual(link, [f'</orders?limit=3&before={order_cursor(order)}>; rel="next"'])
        code, rest, link = get(link[0][1 : link[0].index(">")])
        self.assertEqual(([o["id"] for o in rest], link), ([ids[0]], None))
        self.assertEqual(get("/orders?before=nonsense")[0], 400)
        code, matching, _ = get("/orders?limit=1&status=valid")
        self.assertEqual((code, matching), (200, []))


class PolicyRecheckTests(Fixture):
    """
    Finding 6: a ready order made before C{allowed_domains} was narrowed
    must not be issued for the removed names.
    """

    def setUp(self) -> None:
        super().setUp()
        self.service = self.make_service(Limits(), ("example.com", "old.example.net"))

    def ready_order(self) -> Order:
        names = ("example.com", "old.example.net")
        request = m.NewOrder(identifiers=tuple(m.Identifier(type="dns", value=n) for n in names))
        return self.wait(self.service.new_order(self.token, self.account, request))

    def test_finalize_rechecks(self) -> None:
        order = self.ready_order()
        narrowed = self.make_service(Limits(), ("example.com",))
        csr, _ = make_csr(["example.com", "old.example.net"])
        problem = self.problem(narrowed.finalize(self.token, self.account, order, b64(csr)))
        self.assertIs(problem.type, ProblemType.REJECTED_IDENTIFIER)
        self.assertIn("does not allow old.example.net", problem.detail)
        self.assertIs(self.wait(self.repo.order(order.id)).status, OrderStatus.READY)  # type: ignore[union-attr]
        self.assertEqual(self.queue.submitted, [])

    def test_job_rechecks(self) -> None:
        order = self.ready_order()
        csr, _ = make_csr(["example.com", "old.example.net"])
        self.wait(self.service.finalize(self.token, self.account, order, b64(csr)))
        ca = LocalCA.load_or_create("builtin", tempfile.mkdtemp(), clock=self.clock)
        issuance = IssuanceService(
            repository=self.repo,
            cas={"builtin": ca},
            policies={"shop": sample_policy("shop", ("example.com",))},
            clock=self.clock,
            tokens=self.tokens,
        )
        issuance.submit(order.id)
        failed = self.wait(self.repo.order(order.id))
        assert failed is not None and failed.error is not None
        self.assertIs(failed.status, OrderStatus.INVALID)
        self.assertEqual(failed.error["type"], ProblemType.REJECTED_IDENTIFIER.urn)
        self.assertIsNone(failed.certificate_id)
        self.assertEqual(self.wait(self.repo.queued()), [])
