"""Tracing the CODI latent loop with nnsight: the loop, step hooks, capture, batching, LoRA, remote runs."""
