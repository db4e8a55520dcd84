"""Recovery of failed deliveries: GitHub's delivery log read back, and what we never admitted
asked for again.

GitHub does not retry a failed delivery. Every delivery answered 503 under
overload or shutdown, or sent while the app was down, stays in the app's
delivery log (3 days on github.com, 7 on GitHub Enterprise Server). The
recovery loop pages through that log back to a checkpoint, groups attempts by
``guid``, and asks GitHub to redeliver each event that no attempt delivered
and that the queue never admitted; the redelivery comes back through the
normal webhook route with its original ``X-GitHub-Delivery``.

- ``plan``: the decision, pure (log entries and what is remembered in, the
  guids to request and the reasons for the rest out);
- ``store``: what recovery remembers (checkpoint, requests) and asks the
  queue (was a delivery admitted?), as a Protocol;
- ``loop``: one round and the periodic loop, through the GitHub gateway;
- ``progress``: the operator command's progress bar and summary table.

Imports: the base, config, queue and github; admin reads it.
"""
