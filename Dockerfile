# The three service binaries in one small image (pick one with the container's
# command). Built with the EventStoreDB backend compiled in.
#
#   docker build -t movies .
#   docker run --rm movies auth-service --help

FROM rust:1-bookworm AS build
WORKDIR /src
# The EventStoreDB client builds aws-lc-sys, which needs cmake and clang.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features event-store/eventstoredb \
        -p auth-service -p catalog-service -p gateway \
    && mkdir -p /out \
    && cp target/release/auth-service target/release/catalog-service target/release/gateway /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/movies --create-home movies \
    && install -d -m 0700 -o movies -g movies /var/lib/movies/snapshots
COPY --from=build /out/ /usr/local/bin/
USER movies
WORKDIR /var/lib/movies
# Listen on every interface inside the container; stores are set by the
# compose file (or the SQLite defaults under /var/lib/movies/data).
ENV AUTH_LISTEN=0.0.0.0:50051 \
    CATALOG_LISTEN=0.0.0.0:50052 \
    GATEWAY_LISTEN=0.0.0.0:8000 \
    RUST_LOG=info
EXPOSE 8000 50051 50052
CMD ["gateway"]
