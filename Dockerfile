# sealgate in a container: a static binary on a distroless base, run as a
# non-root user, with its data in a volume.
#
#   docker build -t sealgate .
#   docker run -v sealgate-data:/data -v ./sealgate.yaml:/etc/sealgate/sealgate.yaml:ro \
#     -p 25:2525 sealgate
#
# The config must set data_dir: /data and listen on 0.0.0.0 (inbound.listen,
# and admin.listen stays on loopback inside the container).
FROM golang:1.26 AS build
# --build-arg GOFLAGS=-buildvcs=false builds from a git worktree, whose .git
# names a directory outside the build context.
ARG GOFLAGS
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sealgate ./cmd/sealgate
# The data directory, owned by distroless's nonroot user (65532), which
# the image runs as; a new volume mounted on /data takes this owner and
# mode. distroless has no shell to make it in the final stage.
RUN mkdir -m 0700 /out/data && chown 65532:65532 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sealgate /usr/local/bin/sealgate
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
VOLUME ["/data"]
WORKDIR /data
EXPOSE 2525 465 8443
ENTRYPOINT ["/usr/local/bin/sealgate"]
CMD ["serve", "--config", "/etc/sealgate/sealgate.yaml"]
