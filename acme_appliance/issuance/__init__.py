"""
Issuance: background jobs that turn finalized orders into certificates.
"""

from ._jobs import IssuanceService, Revoker

__all__ = ["IssuanceService", "Revoker"]
