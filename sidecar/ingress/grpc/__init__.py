"""The gRPC API (docs/grpc.md): `Gateway` (raw proxy and typed chat), `Admin`, standard health and
reflection, served by `grpc.aio` on the sidecar's own event loop and routed by the same `Router`.

- `server`: `build_grpc_server` — what `detour serve` starts next to the HTTP server;
- `gateway`, `admin`, `health`: the services, thin async shells;
- `typed` (the typed chat ⇄ a dialect's body and answers), `status` (errors → status codes and
  details), `messages` (state and events → messages), `headers` (metadata → the client's
  credential): pure functions;
- `_generated`: the modules `scripts/generate-grpc` makes from `proto/detour/v1/*.proto`.

Nothing here is imported by the HTTP path: `grpc` and `protobuf` load only when gRPC is served.
"""
