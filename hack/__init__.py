"""Generators that only make sense in a checkout: the chart's copies and the kustomize base (chartsync),
the API reference (apidocs), the Grafana dashboard. Run from the repository root: ``python -m hack.chartsync``."""
