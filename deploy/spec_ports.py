"""SPEC §1's ports, for the deploy checkers (deploy/compose/check.py,
deploy/k8s/check.py): each service, its HTTP port and its gRPC port."""

SPEC_PORTS = {
    "gateway": (8080, None),
    "storefront": (3000, None),
    "identity": (8004, 50055),
    "catalog": (8006, 50050),
    "basket": (8007, 50051),
    "inventory": (8002, 50054),
    "ordering": (8001, 50053),
    "payment": (8003, 50052),
    "notification": (8005, 50056),
    "recommendation": (8008, 50057),
}
# The gateway serves /ready and /metrics on an internal listener, never on
# its public port (crates/gateway, GatewaySettings::internal_addr).
GATEWAY_INTERNAL = 9080
