"""Per-sandbox networking: a persistent network namespace, a veth on the Sandlot bridge,
an address from a private pool, nftables rules that enforce isolation and the egress
policy, and the DNS resolver that turns domain rules into addresses.

The runtime never imports this package: it only receives the namespace path and the
resolver address through `SandboxSpec`.
"""
