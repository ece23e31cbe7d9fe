# The ooto operator image: `docker build -t REGISTRY/ooto:TAG .`
# Two stages so that the final image has no compiler, pip cache or source tree.
#
# Base image: one exact Python release on one Debian release, the same in both stages. Its
# multi-arch index digest as published references give it (this repository's CI has no network
# to check it): sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d.
# docker-library rebuilds a tag for Debian security fixes, so for a reproducible image append
# `@sha256:<digest>` to both FROM lines after `docker buildx imagetools inspect <image>`.
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/ooto
COPY . .
# -c constraints.txt: the exact versions the test suite ran with, not whatever is newest today.
RUN /opt/ooto/bin/pip install -c constraints.txt . \
    && /opt/ooto/bin/python -m compileall -q /opt/ooto

FROM python:3.11.14-slim-bookworm
# The operator image is also the default signer image of sign builds (Secure Boot): Debian's
# linux-kbuild-6.1 ships /usr/lib/linux-kbuild-6.1/scripts/sign-file, the path the generated
# sign Dockerfile calls (ooto.signing.SIGN_FILE). Nothing else in the package is used.
RUN apt-get update \
    && apt-get install -y --no-install-recommends linux-kbuild-6.1 \
    && test -x /usr/lib/linux-kbuild-6.1/scripts/sign-file \
    && rm -rf /var/lib/apt/lists/*
# Same uid/gid as the chart's podSecurityContext; numeric so that runAsNonRoot can verify it.
RUN groupadd --gid 65532 ooto \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ooto
COPY --from=build /opt/ooto /opt/ooto
# The chart mounts the root filesystem read-only: no .pyc writes, unbuffered logs to stderr.
ENV PATH=/opt/ooto/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["ooto", "run"]
