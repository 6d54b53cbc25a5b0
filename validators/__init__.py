"""Validators: runtimes that execute models, parity comparison, latency measurement."""
