"""Data acquisition: verified, resumable downloads; the checksum lock; safe archive extraction; the
official split lists; GitHub LFS media (CREMA-D); user-provided copies verified in place.

Modules: ``download`` (HTTP), ``lockfile`` (trust-on-first-download checksums), ``archive``
(extraction), ``sources`` + ``sources.yaml`` (where things come from), ``splitlists`` (parsers),
``official_splits`` (fetch + read the lists), ``lfs`` + ``cremad`` (LFS media), ``usercopy`` and
``manifest`` (verify in place, manifests for DVC), ``redact`` (no credential in any message),
``command`` (``mla acquire``). No torch import anywhere here.
"""
