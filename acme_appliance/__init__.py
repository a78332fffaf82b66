"""
acme-appliance: an ACME offload appliance built on Twisted.
"""

__version__ = "0.1.0"
