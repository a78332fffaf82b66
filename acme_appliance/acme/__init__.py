"""
ACME offload: the RFC 8555 server the clients talk to.
"""

from ._problems import AcmeProblem, ProblemType
from ._records import AcmeRepository, Order, OrderStatus
from ._server import AcmeServer

__all__ = ["AcmeProblem", "AcmeRepository", "AcmeServer", "Order", "OrderStatus", "ProblemType"]
