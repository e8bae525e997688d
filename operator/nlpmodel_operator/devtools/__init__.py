"""Developer tools: local control plane, test helpers. Not imported by the operator at runtime."""
