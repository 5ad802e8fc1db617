# One image with the five service binaries; docker-compose.yml picks one per container.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/order /src/target/release/payment /src/target/release/stock \
     /src/target/release/coupon /src/target/release/point /src/target/release/audit /usr/local/bin/
ENV RUST_LOG=info
VOLUME /data
