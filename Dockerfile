# syntax=docker/dockerfile:1
# payd's container image: one static-enough binary on a distroless base, run as a non-root
# user. Build: `docker build -t payd .` (from the repository root). The binary is the one
# CI tests: `cargo build --release --locked` of the workspace's `payd-cli` package.
# Roles: `payd serve` (default: embedded SQLite in /var/lib/payd), `payd api`, `payd worker`,
# `payd migrate`, `payd processor-sim`; see deploy/README.md.

# The toolchain the workspace declares (Cargo.toml: rust-version) and CI uses.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The manifests first, so that a change of source alone reuses the fetched dependencies.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p payd-cli \
    && install -D -m 0755 target/release/payd /out/payd \
    && mkdir -p /out/data

# glibc and libgcc (the binary links them dynamically; SQLite is compiled in), CA
# certificates, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/payd /usr/local/bin/payd
# The embedded store's directory, owned by the runtime user (no shell here to chown it).
COPY --from=build --chown=10001:10001 /out/data /var/lib/payd
USER 10001:10001
WORKDIR /var/lib/payd
ENV PAYD_DATA_DIR=/var/lib/payd \
    PAYD_LOG_FORMAT=json
VOLUME ["/var/lib/payd"]
# 9999: the HTTP API (serve, api); 9998: a worker's /health, /ready and /metrics.
EXPOSE 9999 9998
# No curl in the image: the binary asks itself. A worker overrides the address (9998).
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/payd", "probe", "--address", "127.0.0.1:9999", "--path", "/health"]
ENTRYPOINT ["/usr/local/bin/payd"]
CMD ["serve"]
