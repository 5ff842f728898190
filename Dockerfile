# syntax=docker/dockerfile:1
# Parley: the one binary in a slim image, running as an unprivileged user.
# Written to be correct, not built where Parley is developed (no container runtime there):
# see docs/DEPLOY.md, "Containers".

# --- build -----------------------------------------------------------------------------------
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The workspace's members are crates/*; the fuzz corpus is not needed to build the binary.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p parley-cli \
    && install -D -m 0755 target/release/parley /out/parley

# --- run -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 parley \
    && useradd --system --uid 10001 --gid parley --home-dir /var/lib/parley --shell /usr/sbin/nologin parley \
    && install -d -o parley -g parley -m 0700 /var/lib/parley
COPY --from=build /out/parley /usr/local/bin/parley
USER parley:parley
WORKDIR /var/lib/parley
ENV PARLEY_DATA_DIR=/var/lib/parley \
    PARLEY_LISTEN=0.0.0.0:8080
EXPOSE 8080
VOLUME ["/var/lib/parley"]
# SIGTERM stops Parley cleanly (requests drain, workers stop, the heartbeat row goes).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/parley"]
CMD ["serve"]
