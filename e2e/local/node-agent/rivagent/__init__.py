"""Rivulet's node agent for the local Kubernetes bed (see e2e/local/node-agent/README.md)."""
