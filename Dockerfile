# roster: build in a Rust image, run in a slim Debian with only what the binary needs.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock diesel.toml ./
COPY src src
COPY migrations migrations
COPY static static
COPY benches benches
RUN cargo build --release --locked --bin roster \
 && strip target/release/roster

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data roster \
 && mkdir -p /data/exports \
 && chown -R roster /data
COPY --from=build /src/target/release/roster /usr/local/bin/roster
USER roster
WORKDIR /data
ENV ROSTER_BIND=0.0.0.0:8080 \
    ROSTER_EXPORT_DIR=/data/exports \
    RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["roster"]
CMD ["serve"]
