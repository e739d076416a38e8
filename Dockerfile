# The infertap node-agent image (docs/deploy.md#image). Debian 12; multi-stage:
#
#   podman build -t infertap:0.1.0 .          # or `make image`: compiles from source (default)
#
# Stages:
#   runtime-base  Debian 12 with the agent's shared libraries only.
#   build         the project's own scripts: scripts/install-deps.sh --build-only, then CMake.
#   prebuilt      runtime-base + an infertap binary built outside (context: a directory holding
#                 `infertap`); what test/e2e/image_e2e.sh builds, to avoid a second compile.
#   runtime       runtime-base + the binary from `build` (the default target, last).
#
# There is no registry for base images on some machines: BASE may name any Debian 12 image, e.g.
# one imported from `debootstrap --variant=minbase bookworm` (test/e2e/image_e2e.sh does that).
ARG BASE=debian:12-slim

FROM ${BASE} AS runtime-base
# The shared libraries `infertap` links (ldd build/infertap), and CA certificates for the API.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libbpf1 libelf1 zlib1g libcurl4 libssl3 libpcap0.8 libyaml-cpp0.7 \
      libsimdjson14 libprometheus-cpp-core1.0 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
# The agent listens on :9090 (/metrics, /healthz, /readyz) and 127.0.0.1:9091 (inspection API).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/infertap"]
CMD ["run"]

FROM ${BASE} AS build
COPY . /src
WORKDIR /src
RUN bash scripts/install-deps.sh --build-only \
 && cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERTAP_BUILD_TESTS=OFF \
      -DINFERTAP_BUILD_BENCH=OFF >/dev/null \
 && cmake --build /build -j "$(nproc)" --target infertap \
 && strip --strip-debug /build/infertap

FROM runtime-base AS prebuilt
COPY infertap /usr/local/bin/infertap
RUN ["/usr/local/bin/infertap", "version"]

FROM runtime-base AS runtime
COPY --from=build /build/infertap /usr/local/bin/infertap
RUN ["/usr/local/bin/infertap", "version"]
