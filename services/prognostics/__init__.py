"""Prognostics loop: maintenance events, backtests of the alert rules, threshold tuning."""
