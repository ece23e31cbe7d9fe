"""Day 2, the pure part: module-ready node labels, per-node upgrade states, their Node records.

No I/O here: the actors (actors/upgrade*.py) observe the cluster, feed events to
`ooto.domain.upgrade.state.transition` and perform the actions it returns.
"""
