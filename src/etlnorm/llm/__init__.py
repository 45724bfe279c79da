"""The LLM tier: load a causal LM (with per-ontology LoRA adapters), prompt it, generate IDs
(optionally constrained to current IDs), rerank retrieved candidates, calibrate its scores."""
