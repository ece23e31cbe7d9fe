"""The metrics of `ooto.metrics.Metrics`, one mixin per area: Modules and their upgrades
(`modules`), builds and signs (`builds`), the Kubernetes API both ways (`kube`), and the
process itself: actors, tasks, leadership (`runtime`). Each defines its metrics on the one
registry `Metrics` owns and the methods that record them; names, labels and help texts are
what Prometheus sees (docs/operations.md lists them).
"""
