"""The API gateway: serves the public BacktestService on the job store."""
