"""Frozen modality features: BERT text, Swin image and sinusoidal price embeddings, in one feature store."""
