"""Pre-trained and released weights: safe reading of third-party checkpoints (``safe_load``),
conversion to our encoders' state dicts (``convert``, ``released``; ``python -m mla
convert-weights``) and loading of converted files (``load``)."""
