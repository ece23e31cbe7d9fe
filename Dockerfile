# The ooto operator image: `docker build -t REGISTRY/ooto:TAG .`
# Two stages so that the final image has no compiler, pip cache or source tree.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/ooto
COPY . .
RUN /opt/ooto/bin/pip install . \
    && /opt/ooto/bin/python -m compileall -q /opt/ooto

FROM python:3.11-slim
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
