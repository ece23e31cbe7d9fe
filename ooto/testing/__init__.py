"""The local control-plane harness: real etcd, API server, controllers and scheduler, a simulated
kubelet and an OCI registry, used by tests, benchmarks and `ooto demo` (see
docs/local-control-plane.md in the shared docs)."""
