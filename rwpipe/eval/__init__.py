"""Evaluation: policy accuracy, reward-model metrics and test-time selection curves."""
