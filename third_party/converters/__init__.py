"""Per-network PyTorch -> Flax converters; see ``third_party.convert`` for the registry."""
