"""The operator: kopf handlers (thin) over the pure core, and the Kubernetes I/O they need."""
