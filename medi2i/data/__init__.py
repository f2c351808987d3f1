"""Training and evaluation data: cases, folder layouts and manifests."""
