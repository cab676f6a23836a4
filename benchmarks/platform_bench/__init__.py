"""The platform benchmarks behind `make bench`: one module per benchmark, and
the harness they share (fresh databases, the platform, figures, reports).
"""
