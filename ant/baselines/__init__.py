"""The paper's baselines, each one module of the one trainer and evaluator (spec baselines.md)."""
