"""Admin and operations: status document, readiness, metrics, admin routes, setup flow.

Reads the stats of every other part and renders them; nothing but the
server and the runtime imports it.
"""
