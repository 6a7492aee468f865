"""nnsight-codi: interpretability for latent-reasoning (CODI) language models, built on nnsight."""

__version__ = "0.1.0"
