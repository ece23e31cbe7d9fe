"""In-cluster image builds: when a kernel's image is missing, build it and push it.

- `select`: `select_backend(api, settings, reads=None)`, the composition root's entry point.
- `model`: `BuildBackend` (the protocol the actors use), `BuildRef`, `BuildObservation`,
  `BUILD_SELECTOR` (labels of every build object), `BuildStartError`.
- `kaniko`, `buildconfig`: pure renderers and `observe_job` / `observe_build`.
- `backends`: `KanikoJobBackend`, `BuildConfigBackend`.
- `cluster`: pod logs and API discovery (`KubeApiReads`, or `ApiClientReads` over the
  kubernetes-asyncio client).
"""
