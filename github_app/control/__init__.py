"""Control: how wide the dispatcher runs and when it stops taking events.

Owns the EWMA width controller and the circuit breaker (pure, clock
injected), the feedback each event and each GitHub answer leaves, and the
autoscaler task that applies the width. Imports only the shared base; the
dispatcher it steers is seen through a Protocol.
"""
