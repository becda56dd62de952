"""Simulated LLM traffic with injected incidents, ground-truth labels, and offline evaluation."""
