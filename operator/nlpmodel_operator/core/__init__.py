"""Pure core of the operator: data in, data out (catalog, GPU products, planner, resolution)."""
