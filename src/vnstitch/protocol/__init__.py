"""The Stitching Protocol: signed messages, discovery, negotiation, tunnels (sans-I/O).

Theory of operation: see :mod:`vnstitch.protocol.api` for the contract of one Route
Manager core, and PROTOCOL.md at the project root for the wire format and state machines.
"""
