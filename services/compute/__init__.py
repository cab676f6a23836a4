"""The compute worker: runs leased backtests in slot processes and reports
their outcomes to the scheduler; it never touches the database."""
