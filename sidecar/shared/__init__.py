"""Routing state shared by every sidecar on one Redis (docs/scale-out.md): rate limits, open
circuits and remaining-quota budgets.

`merge` is pure: the records on the wire, their keys, and the rules that decide which record wins
(the later expiry for a limit or an open circuit, the later sighting for a budget; absolute epoch
times). `redis_link` is the only module that talks to Redis; `state` is the thin async shell that
joins the two to the router — it publishes what this sidecar learns and applies what its peers
learned, and the request path never waits on it.
"""
