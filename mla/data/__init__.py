"""Raw datasets: the built-in synthetic benchmark generator and split helpers."""
