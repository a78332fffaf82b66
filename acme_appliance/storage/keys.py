"""
The key space of the store: every key the appliance reads or writes is
built here, so that one file shows what the store holds.

A name ending in C{_PREFIX} (or a function returning a string ending in
C{/}) is for L{Store.scan}; the others name one record.
"""

from __future__ import annotations

# ACME accounts, orders, authorizations and certificates (the orders package)


def account(account_id: str) -> str:
    """
    An ACME account of a token's client.
    """
    return f"acct/{account_id}"


def account_by_key(token_id: str, thumbprint: str) -> str:
    """
    The index from a token's account key (JWK thumbprint) to its account id.
    """
    return f"acct-key/{token_id}/{thumbprint}"


def account_orders(account_id: str) -> str:
    """
    The prefix of the index of an account's orders (the order id follows).
    """
    return f"acct-orders/{account_id}/"


ORDER_PREFIX = "order/"


def order(order_id: str) -> str:
    """
    An order, whatever its status.
    """
    return ORDER_PREFIX + order_id


def authorization(authz_id: str) -> str:
    """
    An authorization of an order (one per name).
    """
    return f"authz/{authz_id}"


def certificate(certificate_id: str) -> str:
    """
    An issued certificate: its chain, alternates and revocation state.
    """
    return CERTIFICATE_PREFIX + certificate_id


def certificate_by_serial(serial: str) -> str:
    """
    The index from a serial number (hex) to its certificate id.
    """
    return f"cert-serial/{serial}"


def certificate_by_cert_id(cert_id: str) -> str:
    """
    The index from an RFC 9773 certID (C{<AKI>.<serial>}, base64url) to its
    certificate id.
    """
    return f"cert-ari/{cert_id}"


def certificates_of_name(name: str) -> str:
    """
    The prefix of the index of the certificates covering one name: a
    C{<issued, ms, 16 digits>-<certificate id>} key follows, its value the
    digest of the certificate's whole set of names.
    """
    return f"cert-name/{name}/"


def certificate_sequence(names_digest: str) -> str:
    """
    How many certificates were issued for one set of names (by its digest):
    each new one takes the next slot of the renewal windows.
    """
    return f"cert-seq/{names_digest}"


def certificates_of_token(token_id: str) -> str:
    """
    The prefix of the index of a token's certificates (the id follows).
    """
    return f"cert-token/{token_id}/"


CERTIFICATE_PREFIX = "cert/"

#: Set once every certificate stored before the renewal indexes existed is in them.
CERTIFICATE_INDEX_BUILT = "migration/cert-renewal-index"

ORDER_TIME_PREFIX = "order-time/"
ORDER_DAY_PREFIX = "order-day/"


def order_day(day: int) -> str:
    """
    Marks a day (days since the epoch) on which orders were created, so
    that paging the time index skips the days without any.
    """
    return f"{ORDER_DAY_PREFIX}{day:06d}"


def orders_of_day(day: int) -> str:
    """
    The prefix of the time index of the orders created on one day (days
    since the epoch); a L{order_by_time} key follows.
    """
    return f"{ORDER_TIME_PREFIX}{day:06d}/"


def order_by_time(day: int, cursor: str) -> str:
    """
    The entry of the time index for one order: C{cursor} is
    C{<created, ms, 16 digits>-<order id>}, so keys sort by creation.
    """
    return orders_of_day(day) + cursor


#: Set once every order stored before the time index existed is in it.
ORDER_INDEX_BUILT = "migration/order-time-index"

ISSUE_QUEUE_PREFIX = "queue/issue/"


def issue_queue(order_id: str) -> str:
    """
    An order whose finalize was accepted and whose issuance is not finished.
    """
    return ISSUE_QUEUE_PREFIX + order_id


# issuance: the validated upstream order an order key re-uses, and its lock


def upstream_order(order_key: str) -> str:
    """
    The fresh upstream validation an order key re-issues on (with a TTL).
    """
    return f"upstream/{order_key}"


def failed_validation(order_key: str) -> str:
    """
    An order key's validation that the CA refused, for the orders that
    wait for it or come soon after (with a TTL).
    """
    return f"upstream-failed/{order_key}"


def order_lock(order_key: str) -> str:
    """
    The lease of the process that validates for an order key.
    """
    return f"lock/order/{order_key}"


# rate limits (orders/_limits.py)


def rate_window(limit: str, subject: str, window: int) -> str:
    """
    The counter of one rate limit for one token or account in one window
    (window number since the epoch); it carries a TTL.
    """
    return f"limit/{limit}/{subject}/{window}"


def finalize_slots(token_id: str) -> str:
    """
    The prefix of a token's finalize slots (the slot number follows; the
    value is the order id holding it, with a TTL).
    """
    return f"limit-slot/{token_id}/"


# CA rate budgets (issuance/_budget.py)


def ca_budget(ca: str, limit: str, subject: str) -> str:
    """
    The prefix of the slots of one CA limit for one subject (the slot
    number follows; the value is the clock time it frees, and its TTL is
    the limit's window).  C{limit} is the limit's C{what}.
    """
    return f"budget/{ca}/{limit}/{subject}/"


def ca_budgets(ca: str) -> str:
    """
    The prefix of every budget slot of a CA.
    """
    return f"budget/{ca}/"


def ca_budget_block(ca: str, limit: str, subject: str) -> str:
    """
    A limit the CA itself said was reached (C{rateLimited}): the value is
    the clock time it frees, and it carries a TTL until then.
    """
    return f"budget-block/{ca}/{limit}/{subject}"


def ca_budget_blocks(ca: str) -> str:
    """
    The prefix of every block of a CA.
    """
    return f"budget-block/{ca}/"


def budget_wait(order_id: str) -> str:
    """
    Marks an order whose job waited for a CA budget: its deadline counts
    from when its job last started (with a TTL).
    """
    return f"budget-wait/{order_id}"


# tokens (the policy package)

TOKEN_PREFIX = "token/"


def token(token_id: str) -> str:
    """
    A directory token (its hash, never the secret).
    """
    return TOKEN_PREFIX + token_id


# upstream CAs


def ca_account(ca_name: str) -> str:
    """
    The appliance's account (its key) at one upstream CA.
    """
    return f"ca-account/{ca_name}"


# validation values (the validation package)

DCV_TXT_PREFIX = "dcv/txt/"
DCV_HTTP_PREFIX = "dcv/http/"


def dcv_txt(domain: str) -> str:
    """
    The prefix of a domain's TXT values (a hash of each value follows).
    """
    return f"{DCV_TXT_PREFIX}{domain}/"


def dcv_turn(domain: str) -> str:
    """
    The process whose turn it is to publish TXT values for C{domain}.
    """
    return f"dcv/turn/{domain}"


def dcv_http(host: str, path: str) -> str:
    """
    A file the HTTP file proxy serves for C{host} at C{path}.
    """
    return f"{DCV_HTTP_PREFIX}{host}{path}"


# the event journal and the statistics (notify, stats)


def journal_hour(hour: int) -> str:
    """
    The prefix of the events of one hour (hours since the epoch).
    """
    return f"event/{hour:08d}/"


def order_events(order_id: str) -> str:
    """
    The prefix of one order's events.
    """
    return f"order-event/{order_id}/"


COUNTER_PREFIX = "stats/total/"

HEALTH_PROBE = "health/probe"


# the cluster: what several appliances on one store share


#: The secret every node signs its ACME nonces with (made once, by the first node).
NONCE_SECRET = "cluster/nonce-secret"


def nonce_used(nonce: str) -> str:
    """
    A redeemed ACME nonce (until it would have expired), so that no node
    accepts it again.
    """
    return f"nonce/{nonce}"


JOB_LEASE_PREFIX = "lease/job/"


def job_lease(order_id: str) -> str:
    """
    The lease of the node running an order's issuance job (the value starts
    with the node's name).
    """
    return JOB_LEASE_PREFIX + order_id


CA_DOWN_PREFIX = "cluster/ca-down/"


def ca_down(ca_name: str) -> str:
    """
    A CA some node found down: when (the value), until one finds it up.
    """
    return CA_DOWN_PREFIX + ca_name
