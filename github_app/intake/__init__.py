"""Intake: a webhook delivery from the socket to the queue, acknowledged fast.

Owns signature checks, body decoding, routing fields and the answer GitHub
sees (202, 200 for a duplicate, 401/400/413/415/503). Imports the queue (to
offer), the dispatch registry (to skip events no processor wants) and the
shared base (``envelope``, ``errors``); nothing imports it but the server
and the runtime.
"""
