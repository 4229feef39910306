"""ingress layer."""
