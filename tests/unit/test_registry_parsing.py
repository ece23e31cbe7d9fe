"""Pure parts of ooto.registry: image references, dockerconfigjson credentials and the host
matching container runtimes use, WWW-Authenticate challenges. Credentials must never show."""

from __future__ import annotations

import base64
import json

import pytest

from ooto.registry import (
    ImageReference,
    RegistryAuthError,
    auth_from_dockerconfigjson,
    auth_from_secret,
    parse_challenges,
    parse_image_reference,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", ImageReference("docker.io", "library/nginx", "latest", None)),
        ("nginx:1.25", ImageReference("docker.io", "library/nginx", "1.25", None)),
        ("user/app:v1", ImageReference("docker.io", "user/app", "v1", None)),
        ("docker.io/nginx:1", ImageReference("docker.io", "library/nginx", "1", None)),
        ("index.docker.io/user/app", ImageReference("docker.io", "user/app", "latest", None)),
        ("registry-1.docker.io/user/app:x", ImageReference("docker.io", "user/app", "x", None)),
        ("quay.io/org/mod:5.14.0", ImageReference("quay.io", "org/mod", "5.14.0", None)),
        ("localhost/mod:1", ImageReference("localhost", "mod", "1", None)),
        ("localhost:5000/a/b/c:1", ImageReference("localhost:5000", "a/b/c", "1", None)),
        (
            "127.0.0.1:5000/mod:6.1.0-rpi7_",
            ImageReference("127.0.0.1:5000", "mod", "6.1.0-rpi7_", None),
        ),
        (f"quay.io/org/mod@{DIGEST}", ImageReference("quay.io", "org/mod", None, DIGEST)),
        (f"quay.io/org/mod:v1@{DIGEST}", ImageReference("quay.io", "org/mod", "v1", DIGEST)),
        ("Registry.Example.com/mod:v1", ImageReference("registry.example.com", "mod", "v1", None)),
    ],
)
def test_image_references_parse_with_docker_defaults(image: str, expected: ImageReference) -> None:
    assert parse_image_reference(image) == expected


def test_docker_hub_lookups_go_to_registry_1_and_digest_wins_over_tag() -> None:
    hub = parse_image_reference("nginx:1.25")
    assert hub.api_host == "registry-1.docker.io"
    assert str(hub) == "docker.io/library/nginx:1.25"
    pinned = parse_image_reference(f"quay.io/org/mod:v1@{DIGEST}")
    assert pinned.api_host == "quay.io"
    assert pinned.manifest_reference == DIGEST


@pytest.mark.parametrize(
    "image",
    [
        "",
        "org/UPPER:1",
        "quay.io/org/mod:",
        "quay.io/org/mod:bad tag",
        "quay.io/org/mod@sha256:x",
        "quay.io//mod:1",
        "mod:-leadingdash",
        "quay.io/org/mod:" + "t" * 129,
    ],
)
def test_invalid_references_are_refused(image: str) -> None:
    with pytest.raises(ValueError, match="image reference"):
        parse_image_reference(image)


def _config(auths: dict[str, dict[str, str]]) -> bytes:
    return json.dumps({"auths": auths}).encode()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auth_entry_from_base64_or_username_password_or_identity_token() -> None:
    auth = auth_from_dockerconfigjson(
        _config(
            {
                "a.example.com": {"auth": _b64("alice:pa:ss")},
                "b.example.com": {"username": "bob", "password": "pw-b"},
                "c.example.com": {"identitytoken": "refresh-c"},
            }
        )
    )
    a = auth.for_image(parse_image_reference("a.example.com/x:1"))
    b = auth.for_image(parse_image_reference("b.example.com/x:1"))
    c = auth.for_image(parse_image_reference("c.example.com/x:1"))
    assert a is not None and (a.username, a.password) == ("alice", "pa:ss")
    assert b is not None and (b.username, b.password) == ("bob", "pw-b")
    assert c is not None and c.identity_token == "refresh-c"


@pytest.mark.parametrize(
    "key",
    [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "https://registry-1.docker.io",
        "https://index.docker.io/v2/",
    ],
)
def test_every_docker_hub_alias_serves_docker_hub_images(key: str) -> None:
    auth = auth_from_dockerconfigjson(_config({key: {"auth": _b64("hub:pw")}}))
    for image in ("nginx", "user/app:1", "docker.io/user/app", "index.docker.io/user/app"):
        credential = auth.for_image(parse_image_reference(image))
        assert credential is not None and credential.username == "hub", (key, image)
    assert auth.for_image(parse_image_reference("quay.io/user/app")) is None


@pytest.mark.parametrize(
    ("key", "image", "matches"),
    [
        ("https://quay.io", "quay.io/org/mod:1", True),
        ("http://quay.io/", "quay.io/org/mod:1", True),
        ("quay.io", "sub.quay.io/org/mod:1", False),
        ("*.example.com", "reg.example.com/mod:1", True),
        ("*.example.com", "example.com/mod:1", False),
        ("*.example.com", "a.b.example.com/mod:1", False),
        ("reg.example.com:5000", "reg.example.com:5000/mod:1", True),
        ("reg.example.com:5000", "reg.example.com/mod:1", False),
        ("reg.example.com", "reg.example.com:5000/mod:1", False),
        ("quay.io/org", "quay.io/org/mod:1", True),
        ("quay.io/org", "quay.io/organisation/mod:1", False),
        ("quay.io/org/mod", "quay.io/org/mod:1", True),
    ],
)
def test_hosts_match_as_container_runtimes_do(key: str, image: str, matches: bool) -> None:
    auth = auth_from_dockerconfigjson(_config({key: {"auth": _b64("u:p")}}))
    assert (auth.for_image(parse_image_reference(image)) is not None) == matches


def test_most_specific_entry_wins() -> None:
    auth = auth_from_dockerconfigjson(
        _config({"quay.io": {"auth": _b64("general:p")}, "quay.io/team": {"auth": _b64("team:p")}})
    )
    team = auth.for_image(parse_image_reference("quay.io/team/mod:1"))
    other = auth.for_image(parse_image_reference("quay.io/other/mod:1"))
    assert team is not None and team.username == "team"
    assert other is not None and other.username == "general"


def test_secret_object_with_base64_data_is_read() -> None:
    raw = _config({"quay.io": {"auth": _b64("u:p")}})
    secret = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(raw).decode()},
    }
    assert auth_from_secret(secret).for_image(parse_image_reference("quay.io/a:1")) is not None
    with pytest.raises(RegistryAuthError, match=r"no \.dockerconfigjson"):
        auth_from_secret({"data": {"other": "eA=="}})


SECRET = "hunter2-s3cret"


def test_credentials_never_show_in_repr_or_str() -> None:
    auth = auth_from_dockerconfigjson(
        _config({"quay.io": {"username": "alice", "password": SECRET, "identitytoken": SECRET}})
    )
    credential = auth.for_image(parse_image_reference("quay.io/a:1"))
    for text in (repr(auth), str(auth), repr(credential), str(credential), repr(auth.entries)):
        assert SECRET not in text
        assert _b64(f"alice:{SECRET}") not in text
    assert "quay.io" in repr(auth)


@pytest.mark.parametrize(
    "raw",
    [
        f'{{"auths": {{"quay.io": {{"auth": "{SECRET}!!"}}}}}}'.encode(),
        f'{{"auths": {{"quay.io": {{"auth": "{_b64(SECRET)}"}}}}}}'.encode(),
        f'{{"auths": {{"quay.io": "{SECRET}"}}}}'.encode(),
        f'{{"auths": {{"quay.io": {{"password": "{SECRET}"'.encode(),
        f'["{SECRET}"]'.encode(),
        SECRET.encode(),
    ],
)
def test_malformed_configs_fail_without_quoting_them(raw: bytes) -> None:
    with pytest.raises(RegistryAuthError) as caught:
        auth_from_dockerconfigjson(raw)
    assert SECRET not in str(caught.value)
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_bearer_challenge_with_quoted_commas_and_several_challenges() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push", Basic realm="fallback"'
    )
    bearer, basic = parse_challenges([header])
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:a/b:pull,push",
    }
    assert (basic.scheme, basic.params) == ("basic", {"realm": "fallback"})


def test_challenges_from_several_headers_unquoted_values_and_escapes() -> None:
    parsed = parse_challenges(
        ["Basic realm=plain", 'Bearer realm="a\\"b", error=insufficient_scope']
    )
    assert [c.scheme for c in parsed] == ["basic", "bearer"]
    assert parsed[0].params == {"realm": "plain"}
    assert parsed[1].params == {"realm": 'a"b', "error": "insufficient_scope"}
    assert parse_challenges([""]) == []
