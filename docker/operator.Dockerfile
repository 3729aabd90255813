# rivulet-operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t rivulet-operator .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rivulet-operator --bin rivulet-operator --bin crdgen \
 && install -D -m 0755 target/release/rivulet-operator /out/rivulet-operator \
 && install -D -m 0755 target/release/crdgen /out/crdgen

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/rivulet-operator /usr/local/bin/rivulet-operator
COPY --from=build /out/crdgen /usr/local/bin/crdgen
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rivulet-operator"]
