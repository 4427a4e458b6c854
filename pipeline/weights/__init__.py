"""A model's weights: reading and writing checkpoints (ours and TransformerLens'), and training."""
