"""RegistryClient against an in-process registry that speaks the bearer-token flow (Debian's
docker-registry only does htpasswd without a token service; see the integration tests for it).

Scope: the challenge/token dance and its scope, HEAD->GET fallback, outcome mapping of 404, 429,
5xx and timeouts, the shared TTL cache, single-flight, `fresh`, and no credential in any message
or log line.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from ooto.registry import RegistryAuth, RegistryClient, auth_from_dockerconfigjson

PASSWORD = "pa55-w0rd-never-shown"


@dataclass
class FakeRegistry:
    """A distribution registry with a token service, counting what it was asked."""

    manifests: set[str] = field(default_factory=lambda: {"team/mod:v1"})
    allow_head: bool = True
    status: int | None = None
    delay: float = 0.0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    manifest_requests: list[str] = field(default_factory=list)
    host: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_route("*", "/v2/{repo:.+}/manifests/{ref}", self.manifest)
        return app

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        return web.json_response({"token": f"tok-{request.query['scope']}", "expires_in": 300})

    async def manifest(self, request: web.Request) -> web.Response:
        repo, ref = request.match_info["repo"], request.match_info["ref"]
        self.manifest_requests.append(request.method)
        await asyncio.sleep(self.delay)
        if request.method == "HEAD" and not self.allow_head:
            return web.Response(status=405)
        if request.headers.get("Authorization") != f"Bearer tok-repository:{repo}:pull":
            challenge = (
                f'Bearer realm="http://{self.host}/token",service="fake",'
                f'scope="repository:{repo}:pull"'
            )
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        assert "application/vnd.oci.image.index.v1+json" in request.headers["Accept"]
        if self.status is not None:
            return web.Response(status=self.status)
        if f"{repo}:{ref}" not in self.manifests:
            return web.Response(status=404)
        return web.Response(status=200, headers={"Docker-Content-Digest": "sha256:abc"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def fake() -> AsyncIterator[FakeRegistry]:
    registry = FakeRegistry()
    server = TestServer(registry.app(), host="127.0.0.1")
    await server.start_server()
    registry.host = f"127.0.0.1:{server.port}"
    yield registry
    await server.close()


def _auth(host: str, password: str = PASSWORD) -> RegistryAuth:
    return auth_from_dockerconfigjson(
        f'{{"auths": {{"{host}": {{"username": "alice", "password": "{password}"}}}}}}'.encode()
    )


async def test_bearer_flow_asks_a_pull_scoped_token_once(fake: FakeRegistry) -> None:
    clock = Clock()
    async with RegistryClient(clock=clock, cache_ttl=30) as client:
        check = await client.image_exists(
            f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host)
        )
        assert check.outcome == "present", check.message
        assert "sha256:abc" in check.message
        assert fake.token_requests == [{"scope": "repository:team/mod:pull", "service": "fake"}]
        clock.now += 60  # cache expired, token (300 s) still good: sent up front
        again = await client.image_exists(
            f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host)
        )
        assert again.outcome == "present"
        assert len(fake.token_requests) == 1


async def test_missing_tag_is_missing(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        check = await client.image_exists(
            f"{fake.host}/team/mod:v2", insecure=True, auth=_auth(fake.host)
        )
    assert check.outcome == "missing"
    assert "not found" in check.message


async def test_wrong_password_is_unauthorized_and_never_shown(
    fake: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-" + PASSWORD
    async with RegistryClient() as client:
        check = await client.image_exists(
            f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host, wrong)
        )
    assert check.outcome == "unauthorized"
    assert "alice" in check.message and "refused" in check.message
    assert wrong not in check.message
    assert all(wrong not in record.getMessage() for record in caplog.records)


async def test_no_credentials_says_the_secret_has_none(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        check = await client.image_exists(f"{fake.host}/team/mod:v1", insecure=True, auth=None)
    assert check.outcome == "unauthorized"
    assert "refused anonymous access" in check.message


async def test_head_not_allowed_falls_back_to_get(fake: FakeRegistry) -> None:
    fake.allow_head = False
    async with RegistryClient() as client:
        check = await client.image_exists(
            f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host)
        )
    assert check.outcome == "present"
    assert "GET" in fake.manifest_requests


@pytest.mark.parametrize(
    ("status", "words"), [(500, "HTTP 500"), (503, "HTTP 503"), (429, "rate limiting")]
)
async def test_server_errors_are_errors_never_missing(
    fake: FakeRegistry, status: int, words: str
) -> None:
    fake.status = status
    async with RegistryClient() as client:
        check = await client.image_exists(
            f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host)
        )
    assert check.outcome == "error"
    assert words in check.message


async def test_concurrent_identical_lookups_share_one_request(fake: FakeRegistry) -> None:
    fake.delay = 0.2
    async with RegistryClient() as client:
        checks = await asyncio.gather(
            *(
                client.image_exists(
                    f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host)
                )
                for _ in range(500)
            )
        )
        assert {check.outcome for check in checks} == {"present"}
        assert client.lookups == 1
        # anonymous HEAD (401), then HEAD with the token
        assert fake.manifest_requests == ["HEAD", "HEAD"]


async def test_present_is_cached_missing_briefly_and_fresh_bypasses_the_cache(
    fake: FakeRegistry,
) -> None:
    clock = Clock()
    image = f"{fake.host}/team/mod:v2"
    auth = _auth(fake.host)
    async with RegistryClient(clock=clock, cache_ttl=30, missing_ttl=0.5) as client:
        assert (await client.image_exists(image, insecure=True, auth=auth)).outcome == "missing"
        fake.manifests.add("team/mod:v2")  # a build pushed it
        clock.now += 0.2
        burst = await client.image_exists(image, insecure=True, auth=auth)
        assert (burst.outcome, client.lookups) == ("missing", 1)
        fresh = await client.image_exists(image, insecure=True, auth=auth, fresh=True)
        assert (fresh.outcome, client.lookups) == ("present", 2)
        fake.manifests.discard("team/mod:v2")
        clock.now += 20  # present stays cached for its TTL...
        cached = await client.image_exists(image, insecure=True, auth=auth)
        assert (cached.outcome, client.lookups) == ("present", 2)
        clock.now += 11  # ...and no longer
        expired = await client.image_exists(image, insecure=True, auth=auth)
        assert (expired.outcome, client.lookups) == ("missing", 3)
        fake.manifests.add("team/mod:v2")
        clock.now += 0.6  # missing expires quickly without `fresh`
        again = await client.image_exists(image, insecure=True, auth=auth)
        assert (again.outcome, client.lookups) == ("present", 4)


async def test_different_credentials_do_not_share_answers(fake: FakeRegistry) -> None:
    async with RegistryClient() as client:
        good = await client.image_exists(
            f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host)
        )
        anonymous = await client.image_exists(f"{fake.host}/team/mod:v1", insecure=True, auth=None)
    assert (good.outcome, anonymous.outcome) == ("present", "unauthorized")


async def test_slow_registry_times_out_as_an_error(fake: FakeRegistry) -> None:
    fake.delay = 2.0
    async with RegistryClient(timeout=0.3) as client:
        check = await client.image_exists(
            f"{fake.host}/team/mod:v1", insecure=True, auth=_auth(fake.host)
        )
    assert check.outcome == "error"
    assert "did not answer within 0.3s" in check.message


async def test_secure_lookup_of_a_plain_http_registry_explains_tls_failure(
    fake: FakeRegistry,
) -> None:
    async with RegistryClient() as client:
        check = await client.image_exists(f"{fake.host}/team/mod:v1", insecure=False, auth=None)
    assert check.outcome == "error"
    assert "TLS" in check.message and "insecure" in check.message


async def test_unresolvable_host_is_a_dns_error() -> None:
    async with RegistryClient(timeout=5) as client:
        check = await client.image_exists("no-such-host.invalid/a/b:1", insecure=False, auth=None)
    assert check.outcome == "error"
    assert "DNS" in check.message


async def test_invalid_reference_is_an_error_without_a_request() -> None:
    async with RegistryClient() as client:
        check = await client.image_exists("quay.io/org/Mod:1", insecure=False, auth=None)
        assert client.lookups == 0
    assert check.outcome == "error"
    assert "invalid repository" in check.message


async def test_by_default_missing_is_shared_by_concurrent_askers_only(fake: FakeRegistry) -> None:
    image = f"{fake.host}/team/mod:v3"
    auth = _auth(fake.host)
    fake.delay = 0.1
    async with RegistryClient() as client:
        burst = await asyncio.gather(
            *(client.image_exists(image, insecure=True, auth=auth) for _ in range(50))
        )
        assert {check.outcome for check in burst} == {"missing"} and client.lookups == 1
        fake.manifests.add("team/mod:v3")  # the build pushed it
        after_build = await client.image_exists(image, insecure=True, auth=auth)
        assert (after_build.outcome, client.lookups) == ("present", 2)
