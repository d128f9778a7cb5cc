# Portico's image: one static binary (glibc, statically linked) on distroless/static, as
# UID 65532, no shell. scripts/test builds the same binary the same way and runs it.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked -p portico --bin portico --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/portico /portico

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="portico" \
      org.opencontainers.image.description="Kubernetes ingress controller with an embedded hyper + rustls data plane" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/portico-dev/portico"
COPY --from=build /portico /portico
USER 65532:65532
EXPOSE 8080 8443 10254
ENTRYPOINT ["/portico"]
