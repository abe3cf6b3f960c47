"""The report: Tables 1-3 beside the paper's numbers, claims, figures and report.html (no torch)."""
