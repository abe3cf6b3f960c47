"""Raw datasets: the built-in synthetic benchmark generator, split helpers, and the preparation of the
five real datasets (``prepare``: one module per dataset mapping its official lists onto its raw files)."""
