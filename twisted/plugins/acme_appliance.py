from twisted.application.service import ServiceMaker

acmeAppliance = ServiceMaker(
    "acme-appliance",
    "acme_appliance.tap",
    "An ACME offload appliance: RFC 8555 front for a fleet, upstream CA failover, central validation.",
    "acme-appliance",
)
