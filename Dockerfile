# One image holding every binary of the platform: meter, simulator (sink and fleet),
# analytics, web, migrate, and the all-in-one iot-demo. docker-compose.yml runs each
# service from it with a different command.
#
#   docker build -t iot-demo .

# ---- build ------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
# C toolchain for the bundled librdkafka and SQLite; no cmake needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config perl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependency layer: the manifests with empty crate sources, built once and cached until a
# Cargo.toml or Cargo.lock changes. A code change rebuilds only the workspace's own crates.
COPY Cargo.toml Cargo.lock ./
COPY common/Cargo.toml common/
COPY kafka/Cargo.toml kafka/
COPY cassandra/Cargo.toml cassandra/
COPY meter/Cargo.toml meter/
COPY simulator/Cargo.toml simulator/
COPY analytics/Cargo.toml analytics/
COPY web/Cargo.toml web/
COPY migrations/Cargo.toml migrations/
COPY stack/Cargo.toml stack/
COPY testkit/Cargo.toml testkit/
RUN for crate in . common kafka cassandra meter simulator analytics web migrations stack testkit; do \
        mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
    done \
 && for crate in . cassandra meter simulator analytics web stack; do \
        echo 'fn main() {}' > "$crate/src/main.rs"; \
    done \
 && cargo build --release --locked --workspace --exclude iot-stack --bins \
 && rm -rf target/release/.fingerprint/iot-* target/release/deps/iot_* target/release/deps/libiot_*

# The sources. Their timestamps may be older than the stubs', so touch them for cargo.
COPY . .
RUN find . -path ./target -prune -o -type f \( -name '*.rs' -o -name '*.html' \) -exec touch {} + \
 && cargo build --release --locked --workspace --exclude iot-stack --bins \
 && mkdir /out \
 && cp target/release/meter target/release/simulator target/release/analytics \
       target/release/web target/release/migrate target/release/iot-demo /out/

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl: the compose healthchecks ask each service's /readyz.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/iot --create-home iot
COPY --from=build /out/ /usr/local/bin/
USER iot
WORKDIR /var/lib/iot
ENV IOT_DATA_DIR=/var/lib/iot/data RUST_LOG=info
# Each service is started with its own command; see docker-compose.yml.
CMD ["iot-demo", "--external-addr", "0.0.0.0:8080", "--internal-addr", "127.0.0.1:9080"]
