"""The sampler: vLLM, the engine that serves every adapter (launcher, replica pool, identity
adapter, served-model formats)."""
