"""In-cluster image builds: when a kernel's image is missing, build it and push it.

- `model`: `BuildBackend` (the protocol the actors use), `BuildRef`, `BuildObservation`,
  `BUILD_SELECTOR` (labels of every build object), `BuildStartError`.
- `kaniko`, `buildconfig`: pure renderers and `observe_job` / `observe_build`.
- `backends`: `KanikoJobBackend`, `BuildConfigBackend`, `select_backend(api, setting, reads)`.
- `cluster`: `ApiClientReads`, pod logs and API discovery over the kubernetes-asyncio client.
"""
