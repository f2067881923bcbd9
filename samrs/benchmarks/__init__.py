"""Benchmarks behind ``samrs bench``: the model alone, the samrs pipeline, the SAMRS loop."""
