"""REPORT.md from the logs of every run: tables, conclusions, plots."""
