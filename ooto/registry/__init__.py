"""Does an image exist? An OCI distribution API client on aiohttp.

The one question ooto asks a registry is whether `image` (tag or digest) has a manifest. Public API:

```python
ref = parse_image_reference("nginx:1.25")        # ImageReference(registry="docker.io", ...)
auth = auth_from_secret(secret_dict)              # or auth_from_dockerconfigjson(raw_bytes)
async with RegistryClient() as registry:          # one instance, shared by every caller
    check = await registry.image_exists(image, insecure=False, auth=auth)
    check.outcome   # "present" | "missing" | "unauthorized" | "error"
    check.message   # for a condition or an Event; never contains a credential
    await registry.image_exists(image, insecure=False, auth=auth, fresh=True)  # after a build
```

- A manifest is asked for with HEAD (GET when the registry does not allow HEAD) and the Accept
  headers of Docker v2 manifests and manifest lists and OCI manifests and indexes.
- Auth: HTTP basic, or the bearer-token challenge (`WWW-Authenticate: Bearer realm=...,service=...`)
  with pull scope. Credentials come from a `kubernetes.io/dockerconfigjson` Secret and are picked
  per registry host the way container runtimes do (`auths` keys with or without `https://`,
  paths, `*.` wildcards, docker.io aliases). They never appear in a message, log line, repr or
  exception raised here.
- `insecure=True` tries HTTPS without certificate verification, then plain HTTP, like Docker's
  `--insecure-registry`.
- "missing" means the registry answered 404 for the manifest. DNS, TLS, connection, timeout, 429
  and 5xx problems are "error", rejected or missing credentials are "unauthorized".
- Concurrent identical lookups share one request, so 500 kernels that map to one image ask once.
  Answers are cached and shared: "present" and "unauthorized" for `cache_ttl` (30 s), errors for
  `error_ttl` (3 s). "missing" is not cached by default (`missing_ttl` 0): our own builds turn it
  into "present", and the check right after a build must see that (measured: with 0.5 s, `ooto
  demo` reported a just-built image as missing). `fresh=True` skips the cache altogether.
"""

from ooto.registry.client import (
    MANIFEST_ACCEPT,
    Challenge,
    ImageCheck,
    ImageChecker,
    Outcome,
    RegistryClient,
    parse_challenges,
)
from ooto.registry.credentials import (
    RegistryAuth,
    RegistryAuthError,
    RegistryCredential,
    auth_from_dockerconfigjson,
    auth_from_secret,
)
from ooto.registry.reference import ImageReference, parse_image_reference

__all__ = [
    "MANIFEST_ACCEPT",
    "Challenge",
    "ImageCheck",
    "ImageChecker",
    "ImageReference",
    "Outcome",
    "RegistryAuth",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryCredential",
    "auth_from_dockerconfigjson",
    "auth_from_secret",
    "parse_challenges",
    "parse_image_reference",
]
