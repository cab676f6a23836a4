"""Backcast: trading-strategy backtests as jobs on gRPC and PostgreSQL."""
