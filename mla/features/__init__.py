"""Feature extraction: decode raw media once into a compact, checksummed ``.npy`` feature store.

Importing this package is cheap; torch is only imported by :mod:`mla.features.audio` when fbanks are computed.
"""


class MediaError(RuntimeError):
    """A media file is missing, unreadable or has an unexpected format; the message names the file."""
