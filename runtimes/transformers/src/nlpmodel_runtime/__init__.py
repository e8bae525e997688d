"""nlpmodel-operator's transformers runtime: bitsandbytes quantization and CPU pooling tasks, with vLLM's metrics."""

__version__ = "0.1.0"
