"""The NLPModel API: typed spec/status models, constants, CRD generation."""
