"""The fake Kubernetes API server's parts (see ../README.md)."""
