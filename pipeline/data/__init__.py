"""Text and tokens: corpus sources, the Brown Corpus, tokenizers and experiment sequences, the
pairing of sequences."""
