"""nlpmodel-operator: Kubernetes-native serving of NLP/LLM models."""

__version__ = "0.1.0"
