"""Reaching other hosts: transports, the wire format, rpc handlers and sync."""
