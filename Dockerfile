# syntax=docker/dockerfile:1
# Roster's image: built with Rust 1.95, run on Debian slim as a non-root user.
#
#   docker build -t roster .
#   docker run -p 8080:8080 -v roster-data:/var/lib/roster roster        # embedded SQLite
#   docker run -p 8080:8080 -e ROSTER_DATABASE_URL=postgres://… roster   # PostgreSQL
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

FROM rust:1.95-trixie AS builder
WORKDIR /build
# aws-lc-rs builds with the C compiler the image already has; no cmake needed.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY tests ./tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin roster \
    && install -D -m 0755 target/release/roster /out/roster

FROM debian:trixie-slim AS runtime
# curl: the container health check; ca-certificates: outgoing TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/roster --create-home roster
COPY --from=builder /out/roster /usr/local/bin/roster
USER 10001:10001
WORKDIR /var/lib/roster
# Defaults for a container: listen on every interface; the embedded database
# lives in the volume. Set ROSTER_DATABASE_URL=postgres://… to scale out.
ENV ROSTER_LISTEN=0.0.0.0:8080 \
    ROSTER_DATABASE_URL=sqlite:///var/lib/roster/roster.db
VOLUME ["/var/lib/roster"]
EXPOSE 8080
# SIGTERM drains: in-flight requests finish, WebSockets get close 1001, exit 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/readyz >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/roster"]
CMD ["serve"]
