"""Pre-trained and released weights: safe reading of third-party checkpoints (``safe_load``; the
tensors a torch file declares, checked before any is read: ``declared``),
conversion to our encoders' state dicts (``convert``, ``released``; ``python -m mla
convert-weights``) and loading of converted files (``load``)."""
