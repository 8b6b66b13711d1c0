# syntax=docker/dockerfile:1
# The sluice-controller image the Helm chart runs (charts/sluice, image.repository).
#
#   docker build -t ghcr.io/sluice-dev/sluice-controller:0.1.0 .
#
# Stage 1 builds the release binary with the Rust toolchain the repository is built and
# tested with (`rustc --version`: 1.95.0; the workspace's rust-version is the minimum).
# Stage 2 is distroless/cc: glibc, libgcc, CA certificates (the Prometheus client verifies
# TLS against the platform store) and nothing else; no shell, no package manager.
# It runs as the numeric non-root user 65532 that the chart's securityContext names
# (runAsUser/runAsGroup 65532, runAsNonRoot, readOnlyRootFilesystem: the binary writes
# no files).

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The cache mounts keep the registry and target between builds (BuildKit).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice --bin sluice-controller \
    && install -D -m 0755 target/release/sluice-controller /out/sluice-controller

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/sluice-dev/sluice" \
      org.opencontainers.image.description="sluice: progressive delivery for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/sluice-controller /usr/local/bin/sluice-controller
USER 65532:65532
EXPOSE 9090 8080
ENTRYPOINT ["/usr/local/bin/sluice-controller"]
