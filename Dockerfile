# The selfreset binary in a distroless image: no shell, no package manager, non-root.
#
#   docker build -t selfreset .
#   docker run --rm -e SELFRESET_DATABASE_URL=… -e SELFRESET_SECRET=… -p 8080:8080 selfreset
#
# docker-compose.yml builds it with everything it needs around it (docs/operations.md).

# ---- build ----
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that editing the source does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/selfreset ./cmd/selfreset

# ---- run ----
# distroless/static: CA certificates and time zones, nothing else; its nonroot user is 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/selfreset /selfreset
USER nonroot:nonroot
# Listen on every interface of the container (the binary's default is 127.0.0.1:8080).
ENV SELFRESET_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/selfreset"]
CMD ["serve"]
