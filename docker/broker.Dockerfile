# rivulet-broker image: both server binaries (rivulet-broker, rivulet-coordinator).
# Build from the repository root: docker build -f docker/broker.Dockerfile -t rivulet-broker .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rivulet-broker -p rivulet-coordinator \
 && install -D -m 0755 target/release/rivulet-broker /out/rivulet-broker \
 && install -D -m 0755 target/release/rivulet-coordinator /out/rivulet-coordinator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/rivulet-broker /usr/local/bin/rivulet-broker
COPY --from=build /out/rivulet-coordinator /usr/local/bin/rivulet-coordinator
# uid/gid 65532 ("nonroot"), matching the pod securityContext the operator renders.
USER 65532:65532
EXPOSE 9092 8092 2181 8080
ENTRYPOINT ["/usr/local/bin/rivulet-broker"]
