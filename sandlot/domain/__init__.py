"""The values every layer shares: ids, states, resources, network policies.

No I/O and nothing of Sandlot but its errors, so the API, core, the host-side parts and
the CLI can all speak of a sandbox in the same terms without importing one another.
"""
